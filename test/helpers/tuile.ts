// Test helper: tuile as a user runs it (`node dist/main.js` in its own process, real HTTP on 127.0.0.1)
// and a small client of its management API that follows statuses.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { ROOT, tempDir } from './fixtures.js';

export const TOKEN = 'test-admin-token-0123456789';

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface TuileProcess {
  base: string;
  proc: ChildProcess;
  output(): string;
  /** SIGTERM (or another signal) and wait for the exit; resolves with the exit code or signal */
  stop(signal?: NodeJS.Signals): Promise<number | string | null>;
}

/**
 * Starts `node dist/main.js` on a data folder and waits until it serves. `detached`: in a process group of
 * its own (its pid), which a test can kill whole, build processes included, as a machine that dies would.
 */
export async function startTuile(dataDir: string, env: Record<string, string> = {}, opts: { detached?: boolean } = {}): Promise<TuileProcess> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let out = '';
  const proc = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      TUILE_DATA_DIR: dataDir,
      TUILE_DEMO: '0',
      TUILE_WORKERS: '1',
      TUILE_ADMIN_TOKEN: TOKEN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.detached,
  });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 120_000;
  while (!/tuile: serving \d+ layer/.test(out)) {
    if (Date.now() > deadline || proc.exitCode !== null || proc.signalCode !== null) throw new Error(`tuile did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    proc,
    output: () => out,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode ?? proc.signalCode);
        proc.once('exit', (code, sig) => resolve(code ?? sig));
        proc.kill(signal);
      }),
  };
}

export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** A client of the management API of one datastore. */
export class Api {
  datastore = '';
  constructor(
    readonly base: string,
    readonly token: string = TOKEN,
  ) {}

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const h: Record<string, string> = { Authorization: `Bearer ${this.token}`, ...headers };
    let payload: BodyInit | undefined;
    if (body instanceof FormData || body instanceof Uint8Array || typeof body === 'string') payload = body as BodyInit;
    else if (body !== undefined) {
      payload = JSON.stringify(body);
      h['Content-Type'] = 'application/json';
    }
    const r = await fetch(`${this.base}${path}`, { method, headers: h, body: payload });
    const text = await r.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: kept as text
    }
    return { status: r.status, headers: r.headers, body: parsed as T };
  }

  /** The default datastore's path prefix. */
  async init(): Promise<string> {
    const r = await this.call('GET', '/api/datastores');
    this.datastore = r.body[0]._id;
    return this.datastore;
  }

  get d(): string {
    return `/api/datastores/${this.datastore}`;
  }

  /** Polls an entity until its status is one of `want`; returns every status seen, in order. */
  async until(path: string, want: string[], timeoutMs = 120_000): Promise<{ entity: any; seen: string[] }> {
    const seen: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.call('GET', path);
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      if (seen[seen.length - 1] !== r.body.status) seen.push(r.body.status);
      if (want.includes(r.body.status)) return { entity: r.body, seen };
      if (Date.now() > deadline) throw new Error(`${path} stuck at ${r.body.status} (seen ${seen.join(' -> ')})`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** Polls an execution until its build is under way: PROGRESS with some tiles done (the server saves the
   * progress at most once a second), so a test can stop the server in the middle of a build, not before it. */
  async building(path: string, timeoutMs = 120_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.call('GET', path);
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${JSON.stringify(r.body)}`);
      const { status, progress } = r.body;
      if (status === 'PROGRESS' && progress >= 1 && progress < 100) return r.body;
      if (!['CREATED', 'WAITING', 'PROGRESS'].includes(status)) throw new Error(`${path} is ${status}: it ended before it could be interrupted`);
      if (Date.now() > deadline) throw new Error(`${path} stuck at ${status} ${progress}%`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** Upload, push the files, close; resolves with the upload once CLOSED or UNSTABLE. */
  async deliver(files: { path: string; file: string }[], srs = 'EPSG:2154', name = 'delivery'): Promise<any> {
    const u = await this.call('POST', `${this.d}/uploads`, { name, description: 'test', type: 'RASTER', srs });
    if (u.status !== 201) throw new Error(`upload: ${u.status} ${JSON.stringify(u.body)}`);
    for (const f of files) {
      const form = new FormData();
      form.append('file', new Blob([readFileSync(f.file)]), f.path.split('/').pop());
      const r = await this.call('POST', `${this.d}/uploads/${u.body._id}/data?path=${encodeURIComponent(f.path)}`, form);
      if (r.status !== 200) throw new Error(`push: ${r.status} ${JSON.stringify(r.body)}`);
    }
    await this.call('POST', `${this.d}/uploads/${u.body._id}/close`);
    return (await this.until(`${this.d}/uploads/${u.body._id}`, ['CLOSED', 'UNSTABLE'])).entity;
  }

  async processing(): Promise<string> {
    return (await this.call('GET', `${this.d}/processings`)).body[0]._id;
  }

  /** Creates and launches an execution; resolves with the execution as created (not waited for). */
  async execute(inputs: { upload: string[]; stored_data?: string[] }, parameters: Record<string, unknown>, name = 'pyramid'): Promise<any> {
    const e = await this.call('POST', `${this.d}/processings/executions`, {
      processing: await this.processing(),
      inputs,
      output: { stored_data: { name, storage_tags: ['PYRAMIDE'] } },
      parameters,
    });
    if (e.status !== 201) throw new Error(`execution: ${e.status} ${JSON.stringify(e.body)}`);
    const l = await this.call('POST', `${this.d}/processings/executions/${e.body._id}/launch`);
    if (l.status !== 200) throw new Error(`launch: ${l.status} ${JSON.stringify(l.body)}`);
    return e.body;
  }

  async endpoint(): Promise<string> {
    return (await this.call('GET', `${this.d}/endpoints`)).body[0]._id;
  }

  configuration(layer: string, storedData: string, bottom: string, top = '0') {
    return {
      type: 'WMTS-TMS',
      name: `conf ${layer}`,
      layer_name: layer,
      type_infos: { title: `Layer ${layer}`, abstract: 'test', keywords: ['test'], used_data: [{ stored_data: storedData, bottom_level: bottom, top_level: top }] },
      getfeatureinfo: { stored_data: true },
    };
  }
}

/**
 * A tuile on a new temporary data folder for the tests of the file or describe block it is called in: started
 * before them (`ready` gets it and a client of its API), stopped and its folder removed after.
 */
export function withTuile(prefix: string, env: Record<string, string>, ready: (t: TuileProcess, api: Api) => void): { dataDir: string } {
  const data = tempDir(prefix);
  let t: TuileProcess | undefined;
  beforeAll(async () => {
    t = await startTuile(data.path, env);
    const api = new Api(t.base);
    await api.init();
    ready(t, api);
  });
  afterAll(async () => {
    await t?.stop();
    data.cleanup();
  });
  return { dataDir: data.path };
}
