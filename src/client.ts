// The scenario client of the management API (DESIGN 1): the calls and status waits that the first-start
// demo, the tests, the benchmarks and interop all make, written once. It speaks to a server over HTTP
// (`fetch`) or to the API's Hono app in process (`request`): the same requests either way. It imports
// nothing of the server, so that the .mjs scripts load it from dist/ beside a running tuile.

import { readFile } from 'node:fs/promises';

/** What sends a request: `fetch` on a base URL, or a Hono app's `request`. */
export type Transport = (path: string, init: RequestInit) => Promise<Response>;

export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface UntilOptions {
  /** statuses that end the wait with an error (the entity can no longer reach `want`) */
  fail?: string[];
  /** Infinity waits for as long as it takes */
  timeoutMs?: number;
  everyMs?: number;
}

/** A call the API answered with an unexpected status, or a wait that ended badly. */
export class ScenarioError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ScenarioError';
  }
}

export interface StoredDataInputs {
  upload: string[];
  stored_data?: string[];
}

/** A file of a delivery: its path in the upload, and its bytes or the local file that holds them. */
export type DeliveryFile = { path: string } & ({ bytes: Uint8Array } | { file: string });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client of the management API, bound to one datastore once `init` has run. */
export class ApiClient {
  datastore = '';
  readonly send: Transport;

  /** `base` is a URL (`http://127.0.0.1:8080`) reached with fetch, or a transport such as a Hono app's request. */
  constructor(
    readonly base: string | Transport,
    readonly token: string,
  ) {
    this.send = typeof base === 'string' ? (path, init) => fetch(`${base}${path}`, init) : base;
  }

  /** One call; JSON bodies are sent and parsed, anything else answered is kept as text. Never throws on a status. */
  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const h: Record<string, string> = { Authorization: `Bearer ${this.token}`, ...headers };
    let payload: BodyInit | undefined;
    // a Blob: Hono's request builds a Request, which takes a Node Buffer's pooled ArrayBuffer whole
    if (body instanceof Uint8Array) payload = new Blob([new Uint8Array(body)]);
    else if (body instanceof FormData || typeof body === 'string') payload = body;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      h['Content-Type'] = 'application/json';
    }
    const r = await this.send(path, { method, headers: h, body: payload });
    const text = await r.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: kept as text
    }
    return { status: r.status, headers: r.headers, body: parsed as T };
  }

  /** A call that must succeed (any 2xx, or exactly `want`); answers its body. */
  async must<T = any>(method: string, path: string, body?: unknown, want?: number, headers?: Record<string, string>): Promise<T> {
    const r = await this.call<T>(method, path, body, headers);
    if (want === undefined ? r.status >= 300 : r.status !== want) {
      throw new ScenarioError(`${method} ${path}: ${r.status} ${typeof r.body === 'string' ? r.body : JSON.stringify(r.body)}`, r.status);
    }
    return r.body;
  }

  /** Binds the client to the default datastore; answers its id. */
  async init(): Promise<string> {
    this.datastore = (await this.must('GET', '/api/datastores'))[0]._id;
    return this.datastore;
  }

  /** The datastore's path prefix. */
  get d(): string {
    return `/api/datastores/${this.datastore}`;
  }

  /** Polls an entity until its status is one of `want`; answers it with every status seen, in order. */
  async until(path: string, want: string[], options: number | UntilOptions = {}): Promise<{ entity: any; seen: string[] }> {
    const { fail = [], timeoutMs = 120_000, everyMs = 50 } = typeof options === 'number' ? { timeoutMs: options } : options;
    const seen: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.call('GET', path);
      if (r.status !== 200) throw new ScenarioError(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`, r.status);
      if (seen[seen.length - 1] !== r.body.status) seen.push(r.body.status);
      if (want.includes(r.body.status)) return { entity: r.body, seen };
      if (fail.includes(r.body.status)) throw new ScenarioError(`${path} ended ${r.body.status}`);
      if (Date.now() > deadline) throw new ScenarioError(`${path} stuck at ${r.body.status} (seen ${seen.join(' -> ')})`);
      await sleep(everyMs);
    }
  }

  /** Polls an execution until its build is under way: PROGRESS with some tiles done (the server saves the
   * progress at most once a second), so that a stop lands in the middle of a build, not before it. */
  async building(path: string, timeoutMs = 120_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status, progress, ...rest } = await this.must('GET', path, undefined, 200);
      if (status === 'PROGRESS' && progress >= 1 && progress < 100) return { status, progress, ...rest };
      if (!['CREATED', 'WAITING', 'PROGRESS'].includes(status)) throw new ScenarioError(`${path} is ${status}: it ended before it could be interrupted`);
      if (Date.now() > deadline) throw new ScenarioError(`${path} stuck at ${status} ${progress}%`);
      await sleep(50);
    }
  }

  /** A new upload (OPEN); answers it. */
  async upload(name: string, srs = 'EPSG:2154', description = name): Promise<any> {
    return this.must('POST', `${this.d}/uploads`, { name, description, type: 'RASTER', srs }, 201);
  }

  /** Pushes one file to an upload: multipart (field `file`) or, with `raw`, the bytes as the body. */
  async push(upload: string, file: DeliveryFile, raw = false): Promise<void> {
    const path = `${this.d}/uploads/${upload}/data?path=${encodeURIComponent(file.path)}`;
    const bytes = 'bytes' in file ? file.bytes : await readFile(file.file);
    if (raw) {
      await this.must('POST', path, bytes, 200, { 'Content-Type': 'application/octet-stream' });
      return;
    }
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(bytes)]), file.path.split('/').pop());
    await this.must('POST', path, form, 200);
  }

  /** Upload, push the files, close; answers the upload once CLOSED or UNSTABLE. */
  async deliver(files: DeliveryFile[], srs = 'EPSG:2154', name = 'delivery', options: { description?: string; raw?: boolean } = {}): Promise<any> {
    const u = await this.upload(name, srs, options.description ?? 'test');
    for (const f of files) await this.push(u._id, f, options.raw);
    await this.must('POST', `${this.d}/uploads/${u._id}/close`, undefined, 200);
    return (await this.until(`${this.d}/uploads/${u._id}`, ['CLOSED', 'UNSTABLE'], { timeoutMs: 300_000 })).entity;
  }

  /** The id of a processing: `raster-to-pyramid` (the first) unless another technical name is asked. */
  async processing(technicalName?: string): Promise<string> {
    const list = (await this.must('GET', `${this.d}/processings`)) as { _id: string; technical_name: string }[];
    const p = technicalName ? list.find((x) => x.technical_name === technicalName) : list[0];
    if (!p) throw new ScenarioError(`no ${technicalName} processing`);
    return p._id;
  }

  /** Creates and launches an execution; answers the execution as created (not waited for). */
  async execute(inputs: StoredDataInputs | { stored_data: string[] }, parameters: Record<string, unknown>, name = 'pyramid', processing?: string): Promise<any> {
    const e = await this.must(
      'POST',
      `${this.d}/processings/executions`,
      { processing: processing ?? (await this.processing()), inputs, output: { stored_data: { name, storage_tags: ['PYRAMIDE'] } }, parameters },
      201,
    );
    await this.must('POST', `${this.d}/processings/executions/${e._id}/launch`, undefined, 200);
    return e;
  }

  /** Waits for an execution to end; answers it when SUCCESS, throws with its logs otherwise. */
  async finished(execution: string, timeoutMs = 300_000): Promise<any> {
    const path = `${this.d}/processings/executions/${execution}`;
    const { entity } = await this.until(path, ['SUCCESS', 'FAILURE', 'ABORTED'], { timeoutMs, everyMs: 100 });
    if (entity.status !== 'SUCCESS') {
      const logs = await this.call('GET', `${path}/logs`);
      throw new ScenarioError(`execution ${entity.name ?? execution}: ${entity.status}\n${([] as unknown[]).concat(logs.body).join('\n')}`);
    }
    return entity;
  }

  /** An execution launched and waited for: answers the id of the stored data it made. */
  async compute(inputs: StoredDataInputs | { stored_data: string[] }, parameters: Record<string, unknown>, name = 'pyramid', processing?: string): Promise<string> {
    const e = await this.execute(inputs, parameters, name, processing);
    return (await this.finished(e._id)).output.stored_data._id;
  }

  /** The id of the datastore's first endpoint (the open WMTS-TMS one), or of the one of that `open`. */
  async endpoint(open?: boolean): Promise<string> {
    const list = (await this.must('GET', `${this.d}/endpoints`)) as { _id: string; open: boolean }[];
    const e = open === undefined ? list[0] : list.find((x) => x.open === open);
    if (!e) throw new ScenarioError(`no endpoint with open: ${open}`);
    return e._id;
  }

  /** The body of a WMTS-TMS configuration of one stored data. */
  configuration(layer: string, storedData: string, bottom: string, top = '0') {
    return {
      type: 'WMTS-TMS',
      name: `conf ${layer}`,
      layer_name: layer,
      type_infos: { title: `Layer ${layer}`, abstract: 'test', keywords: ['test'], used_data: [{ stored_data: storedData, bottom_level: bottom, top_level: top }] },
      getfeatureinfo: { stored_data: true },
    };
  }

  /** A configuration and its offering on an endpoint, waited for until PUBLISHED; answers both ids. */
  async publish(body: unknown, offering: { endpoint?: string; open?: boolean } = {}): Promise<{ configuration: string; offering: string }> {
    const c = await this.must('POST', `${this.d}/configurations`, body, 201);
    const o = await this.must('POST', `${this.d}/configurations/${c._id}/offerings`, { endpoint: offering.endpoint ?? (await this.endpoint()), open: offering.open ?? true }, 201);
    await this.until(`${this.d}/offerings/${o._id}`, ['PUBLISHED'], { fail: ['UNSTABLE'], timeoutMs: 300_000 });
    return { configuration: c._id, offering: o._id };
  }

  /** The configuration replaced by `body`, then its offering synchronised and waited for until PUBLISHED. */
  async synchronise(published: { configuration: string; offering: string }, body: unknown): Promise<void> {
    await this.must('PUT', `${this.d}/configurations/${published.configuration}`, body, 200);
    await this.must('PUT', `${this.d}/offerings/${published.offering}`, undefined, 200);
    await this.until(`${this.d}/offerings/${published.offering}`, ['PUBLISHED'], { fail: ['UNSTABLE'], timeoutMs: 300_000 });
  }
}
