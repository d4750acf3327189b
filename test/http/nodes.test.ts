// Nodes in the shared mode of issue 17, as users run them: two `node dist/main.js` processes, each with its
// own data folder and tile cache and nothing shared on disk, their state in one PostgreSQL database
// (TUILE_STATE_URL) and their uploads and pyramids in one object store (TUILE_STORAGE_URL, the engines'
// Swift s3api). The seed scenario published through A is served by B byte for byte, capabilities
// included; a sync through B is served by A within a second; the node running a build killed with its
// process group leaves its execution FAILURE on the other, which keeps serving and accepting writes, and
// no object of the partial pyramid; the state survives a restart of every node.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { XMLParser } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enginesOrSkip, freshStorageUrl, parseStorageUrl, s3Client } from '../helpers/engines.js';
import { ROOT, fixture, tempDir } from '../helpers/fixtures.js';
import { freshDatabase } from '../helpers/pgstate.js';
import { Api, freePort, startTuile, type TuileProcess } from '../helpers/tuile.js';

const engines = enginesOrSkip('nodes.test');
const skip = !engines;
const storageUrl = engines ? freshStorageUrl(engines, 'nodes') : '';
const LAYER = 'nodes';
const TILE = '/tiles/nodes/4/8/5.png'; // covers both deliveries: differs between the north and the south
const work = tempDir('tuile-nodes-');
const dataOf = (name: string) => join(work.path, name);
let db: { url: string; drop: () => Promise<void> } | undefined;
const nodes: Record<'a' | 'b', TuileProcess | undefined> = { a: undefined, b: undefined };

async function startNode(name: 'a' | 'b'): Promise<Api> {
  const t = await startTuile(dataOf(name), { ...engines!.env, TUILE_STATE_URL: db!.url, TUILE_STORAGE_URL: storageUrl }, { detached: true });
  nodes[name] = t;
  const api = new Api(t.base);
  await api.init();
  return api;
}

/** SIGKILL of a node's process group: the server and its build process, at once. */
async function kill(name: 'a' | 'b'): Promise<void> {
  const t = nodes[name]!;
  const exited = new Promise((r) => t.proc.once('exit', r));
  process.kill(-t.proc.pid!, 'SIGKILL');
  await exited;
  nodes[name] = undefined;
}

beforeAll(async () => {
  if (skip) return;
  db = await freshDatabase();
  for (const name of ['a', 'b']) mkdirSync(dataOf(name));
});

afterAll(async () => {
  for (const name of ['a', 'b'] as const) {
    const t = nodes[name];
    if (t && t.proc.exitCode === null && t.proc.signalCode === null) process.kill(-t.proc.pid!, 'SIGKILL');
  }
  await db?.drop();
  work.cleanup();
});

/**
 * Waits until a node knows an entity another node made: reads on a node see another node's commit once
 * it is notified (within a second; writes always see it, under the lock).
 */
async function visible(api: Api, path: string): Promise<void> {
  await expect.poll(async () => (await api.call('GET', `${api.d}${path}`)).status, { timeout: 1000, interval: 10 }).toBe(200);
}

async function built(api: Api, e: { _id: string; output: { stored_data: { _id: string } } }): Promise<string> {
  await visible(api, `/processings/executions/${e._id}`);
  const { entity } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE', 'ABORTED']);
  if (entity.status !== 'SUCCESS') throw new Error(`execution ${entity.status}: ${JSON.stringify((await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`)).body)}`);
  return e.output.stored_data._id;
}

/** The keys of the objects under the nodes' storage prefix. */
async function objects(): Promise<string[]> {
  const { bucket, prefix } = parseStorageUrl(storageUrl);
  const s3 = s3Client(engines!);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ContinuationToken: token }));
    for (const o of r.Contents ?? []) keys.push(o.Key!.slice(prefix.length + 1));
    token = r.NextContinuationToken;
  } while (token);
  s3.destroy();
  return keys;
}

/** A node's WMTS capabilities, parsed, with its own base URL written BASE. */
async function capabilities(base: string): Promise<unknown> {
  const r = await fetch(`${base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities`);
  expect(r.status).toBe(200);
  return new XMLParser({ ignoreAttributes: false }).parse((await r.text()).replaceAll(base, 'BASE'));
}

async function tile(base: string): Promise<{ status: number; sha: string }> {
  const r = await fetch(`${base}${TILE}`);
  return { status: r.status, sha: createHash('sha1').update(Buffer.from(await r.arrayBuffer())).digest('hex') };
}

describe('two nodes on PostgreSQL and object storage', () => {
  let a: Api;
  let b: Api;
  let offering = '';
  let configuration = '';
  let south = '';

  it('the seed scenario published through A is served identically by B', async () => {
    if (skip) return;
    [a, b] = await Promise.all([startNode('a'), startNode('b')]);
    expect(a.datastore).toBe(b.datastore);
    const north = await a.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
    expect(north.status).toBe('CLOSED');
    // launched through A, built by whichever node claimed it, followed through B
    const e = await a.execute({ upload: [north._id] }, { compression: 'png', bottom: 6 }, 'north');
    const sdNorth = await built(b, e);
    expect((await b.call('GET', `${b.d}/uploads/${north._id}`)).body).toEqual((await a.call('GET', `${a.d}/uploads/${north._id}`)).body);
    const conf = await b.call('POST', `${b.d}/configurations`, b.configuration(LAYER, sdNorth, '6'));
    expect(conf.status).toBe(201);
    configuration = conf.body._id;
    const off = await b.call('POST', `${b.d}/configurations/${configuration}/offerings`, { endpoint: await b.endpoint() });
    expect(off.status).toBe(201);
    offering = off.body._id;
    await b.until(`${b.d}/offerings/${offering}`, ['PUBLISHED']);
    await expect.poll(async () => (await tile(a.base)).status, { timeout: 1000, interval: 20 }).toBe(200);
    expect(await tile(a.base)).toEqual(await tile(b.base));
    // nothing on either node's disk: the pyramid and the upload are objects
    for (const name of ['a', 'b']) expect(existsSync(join(dataOf(name), 'pyramids', sdNorth))).toBe(false);
    const keys = await objects();
    expect(keys.some((k) => k.includes(sdNorth))).toBe(true);
    expect(keys.some((k) => k.includes(north._id))).toBe(true);
    const caps = await capabilities(a.base);
    expect(JSON.stringify(caps)).toContain(LAYER);
    expect(await capabilities(b.base)).toEqual(caps);
    // each node says which node ran the build, and both say the same
    const logs = (await a.call('GET', `${a.d}/processings/executions/${e._id}/logs`)).body as string[];
    expect(logs.join('\n')).toMatch(/ on node \S+/);

    const s = await b.deliver([{ path: 'south.tif', file: fixture('france_relief_south_2154.tif') }], 'EPSG:2154', 'south');
    south = await built(a, await b.execute({ upload: [s._id] }, { compression: 'png', bottom: 6 }, 'south'));
  });

  it('a sync through B is served by A within a second', async () => {
    if (skip) return;
    const before = await tile(a.base);
    expect((await b.call('PUT', `${b.d}/configurations/${configuration}`, b.configuration(LAYER, south, '6'))).status).toBe(200);
    expect((await b.call('PUT', `${b.d}/offerings/${offering}`)).status).toBeLessThan(300);
    await b.until(`${b.d}/offerings/${offering}`, ['PUBLISHED']);
    const published = Date.now();
    const want = await tile(b.base);
    expect(want.sha).not.toBe(before.sha);
    let seen = before;
    while (seen.sha !== want.sha && Date.now() - published < 5000) seen = await tile(a.base);
    const ms = Date.now() - published;
    console.log(`nodes: a sync through B served by A ${ms} ms after B answered PUBLISHED`);
    expect(seen).toEqual(want);
    expect(ms).toBeLessThanOrEqual(1000);
  });

  it('executions launched through both nodes at once each run once, on one node', async () => {
    if (skip) return;
    const uploads = (await a.call('GET', `${a.d}/uploads`)).body as { _id: string; name: string }[];
    const north = uploads.find((u) => u.name === 'delivery')!._id;
    const launched = await Promise.all([a, b, a, b].map((api, i) => api.execute({ upload: [north] }, { compression: 'png', bottom: 3 }, `small ${i}`)));
    const ran: string[] = [];
    for (const e of launched) {
      await built(b, e);
      const logs = (await a.call('GET', `${a.d}/processings/executions/${e._id}/logs`)).body as string[];
      const starts = logs.filter((l) => / PROGRESS: /.test(l));
      expect(starts, logs.join('\n')).toHaveLength(1);
      ran.push(/on node (\S+)/.exec(starts[0])![1]);
    }
    console.log(`nodes: 4 executions ran on ${ran.join(', ')}`);
  });

  it('the node running a build dies with it: its execution ends FAILURE, the other serves and builds', async () => {
    if (skip) return;
    const big = await a.deliver([{ path: 'miriam.tif', file: fixture('modis_miriam_4326.tif') }], 'EPSG:4326', 'miriam');
    expect(big.status).toBe('CLOSED');
    const e = await a.execute({ upload: [big._id] }, { compression: 'jpg', bottom: 12 }, 'miriam');
    await a.building(`${a.d}/processings/executions/${e._id}`);
    const logs = (await a.call('GET', `${a.d}/processings/executions/${e._id}/logs`)).body as string[];
    const runner = /on node (\S+)/.exec(logs.join('\n'))![1];
    const dead = readFileSync(join(dataOf('a'), 'node-id'), 'utf8').trim() === runner ? 'a' : 'b';
    expect(readFileSync(join(dataOf(dead), 'node-id'), 'utf8').trim()).toBe(runner);
    const live = dead === 'a' ? b : a;
    const served = await tile(live.base);
    await kill(dead);
    const killed = Date.now();

    const { entity } = await live.until(`${live.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE', 'ABORTED'], 60_000);
    console.log(`nodes: the execution of the killed node ended ${entity.status} after ${((Date.now() - killed) / 1000).toFixed(1)} s`);
    expect(entity.status).toBe('FAILURE');
    expect(entity.last_event.title).toBe('failed');
    const after = (await live.call('GET', `${live.d}/processings/executions/${e._id}/logs`)).body as string[];
    expect(after.at(-1)).toMatch(/FAILURE: the node running it stopped .*partial output was removed/);
    expect((await live.call('GET', `${live.d}/stored_data/${e.output.stored_data._id}`)).body.status).toBe('UNSTABLE');
    expect((await objects()).filter((k) => k.includes(e.output.stored_data._id))).toEqual([]);
    // the survivor kept serving, and takes writes and builds
    expect(await tile(live.base)).toEqual(served);
    const again = await live.execute({ upload: [big._id] }, { compression: 'png', bottom: 4 }, 'miriam small');
    await built(live, again);
    expect((await live.call('DELETE', `${live.d}/stored_data/${e.output.stored_data._id}`)).status).toBe(204);
  });

  it('the state survives a restart of every node', async () => {
    if (skip) return;
    const live = nodes.a ? a : b;
    // the offering's URLs name the node that answers
    const read = async (api: Api, path: string) => JSON.parse(JSON.stringify((await api.call('GET', `${api.d}${path}`)).body).replaceAll(api.base, 'BASE'));
    const before = {
      offering: await read(live, `/offerings/${offering}`),
      executions: await read(live, '/processings/executions'),
      tile: await tile(live.base),
    };
    for (const name of ['a', 'b'] as const) {
      if (nodes[name]) expect(await nodes[name]!.stop()).toBe(0);
      nodes[name] = undefined;
    }
    [a, b] = await Promise.all([startNode('a'), startNode('b')]);
    // a node's data folder is its own: the temporary folder of the build killed with its node went at its start
    for (const name of ['a', 'b']) expect(readdirSync(join(dataOf(name), 'pyramids')).filter((n) => n.includes('.tmp-'))).toEqual([]);
    for (const api of [a, b]) {
      expect(await read(api, `/offerings/${offering}`)).toEqual(before.offering);
      expect(await read(api, '/processings/executions')).toEqual(before.executions);
      expect(await tile(api.base)).toEqual(before.tile);
    }
  });
});

describe('checks across nodes', () => {
  it('the node checking an upload dies: another node checks it, in the same run', async () => {
    if (skip) return;
    // both nodes up (the previous block restarted them); A closes an upload and dies in its check
    const a = new Api(nodes.a!.base);
    const b = new Api(nodes.b!.base);
    await Promise.all([a.init(), b.init()]);
    const u = await a.upload('checked', 'EPSG:4326');
    await a.push(u._id, { path: 'miriam.tif', file: fixture('modis_miriam_4326.tif') });
    expect((await a.call('POST', `${a.d}/uploads/${u._id}/close`)).status).toBe(200);
    await kill('a');
    const killed = Date.now();
    // B learns of the close by notification (milliseconds); it must still be CHECKING, not checked by A
    await expect.poll(async () => (await b.call('GET', `${b.d}/uploads/${u._id}`)).body.status, { timeout: 1000, interval: 10 }).not.toBe('OPEN');
    expect((await b.call('GET', `${b.d}/uploads/${u._id}`)).body.status).toBe('CHECKING');
    const { entity } = await b.until(`${b.d}/uploads/${u._id}`, ['CLOSED', 'UNSTABLE'], 60_000);
    console.log(`nodes: the check of the killed node was run again by the other ${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`);
    expect(entity.status).toBe('CLOSED');
    // the run A began, finished by B: one run, not one per node
    const checks = (await b.call('GET', `${b.d}/uploads/${u._id}/checks`)).body;
    expect(checks.passed).toHaveLength(1);
    expect([checks.asked, checks.in_progress, checks.failed]).toEqual([[], [], []]);
  });
});

describe('a data folder moving to PostgreSQL', () => {
  it('brings its state into the empty database, and keeps its uploads', async () => {
    if (skip) return;
    const data = dataOf('moving');
    mkdirSync(data);
    let t = await startTuile(data);
    let api = new Api(t.base);
    await api.init();
    const u = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
    expect(u.status).toBe('CLOSED');
    const before = (await api.call('GET', `${api.d}/uploads/${u._id}`)).body;
    expect(await t.stop()).toBe(0);

    const moved = await freshDatabase();
    try {
      for (const round of [1, 2]) {
        t = await startTuile(data, { TUILE_STATE_URL: moved.url });
        api = new Api(t.base);
        await api.init();
        // imported once, by the start that found the database empty
        expect(/is imported into the empty state database/.test(t.output())).toBe(round === 1);
        expect((await api.call('GET', `${api.d}/uploads/${u._id}`)).body).toEqual(before);
        expect(existsSync(join(data, 'uploads', u._id))).toBe(true);
        expect(await t.stop()).toBe(0);
      }
    } finally {
      await moved.drop();
    }
  });
});

describe('a state URL that cannot be used', () => {
  // a server with no state must not serve: one line naming the database (its password hidden), exit 1
  it('stops the start with one line saying why', async () => {
    const port = await freePort();
    const start = (url: string) =>
      spawnSync(process.execPath, [join(ROOT, 'dist/main.js')], {
        env: { ...process.env, HOST: '127.0.0.1', PORT: '0', TUILE_DATA_DIR: dataOf(`bad-${port}`), TUILE_DEMO: '0', TUILE_STATE_URL: url },
        encoding: 'utf8',
        timeout: 60_000,
      });
    const closed = start(`postgres://tuile:secret@127.0.0.1:${port}/tuile`);
    expect(closed.status).toBe(1);
    expect(closed.stderr.trim().split('\n')).toHaveLength(1);
    expect(closed.stderr).toMatch(new RegExp(`state database postgres://tuile:\\*\\*\\*@127.0.0.1:${port}/tuile: .*ECONNREFUSED`));
    expect(closed.stderr).not.toMatch(/secret/);
    const scheme = start('mysql://tuile@127.0.0.1/tuile');
    expect(scheme.status).toBe(1);
    expect(scheme.stderr).toMatch(/TUILE_STATE_URL: a state URL is postgres:/);
  });
});
