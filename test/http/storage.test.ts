// Pyramids in S3-compatible object storage (#17), on the real store scripts/engines.sh starts (Swift with
// s3api): the reference scenario (north, then south chained on it, published) run through the API of a
// tuile with TUILE_STORAGE_URL and of one on local disk serves the same bytes for every tile; the pyramids
// are objects, not folders, opened with one ranged GET each (header and directories) and read with one per
// tile (requests counted on the SDK client); a restart serves them again; uploads are kept in the store
// too, and a node that lacks an upload's files builds it from there; a fusion reads and writes there;
// deleting a stored data or an upload deletes its objects.
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PM, lonLatToMercator, tileLimitsForBounds } from '../../src/geo/tms.js';
import { PyramidChain } from '../../src/pyramid/chain.js';
import { S3Storage } from '../../src/pyramid/s3.js';
import { enginesOrSkip, freshStorageUrl, parseStorageUrl, s3Client } from '../helpers/engines.js';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const NORTH = fixture('france_relief_north_2154.tif');
const SOUTH = fixture('france_relief_south_2154.tif');
const LAYER = 'france';
const BOTTOM = 7;
const PNG = { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: BOTTOM };

const engines = enginesOrSkip('pyramids in object storage');
const local = tempDir('tuile-storage-local-');
const remote = tempDir('tuile-storage-s3-');
const storageUrl = engines ? freshStorageUrl(engines, 'storage') : '';
const remoteEnv = engines
  ? { ...engines.env, TUILE_STORAGE_URL: storageUrl, TUILE_WORKERS: '2' }
  : {};
let s3: S3Client;
const servers: Record<'local' | 'remote', { t: TuileProcess; api: Api; ids: Record<string, string> }> = {} as never;

async function built(api: Api, e: any): Promise<string> {
  const { entity } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE', 'ABORTED']);
  if (entity.status !== 'SUCCESS') throw new Error(`execution ${e._id} ${entity.status}:\n${(await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`)).body}`);
  return e.output.stored_data._id;
}

async function publish(api: Api, layer: string, storedData: string): Promise<void> {
  const conf = await api.call('POST', `${api.d}/configurations`, api.configuration(layer, storedData, String(BOTTOM)));
  expect(conf.status).toBe(201);
  const o = await api.call('POST', `${api.d}/configurations/${conf.body._id}/offerings`, { endpoint: await api.endpoint(), open: true });
  expect((await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');
}

/** North, south chained on it, a layer on the chain: the scenario of DESIGN 1 through the API. */
async function scenario(api: Api): Promise<Record<string, string>> {
  const [n, s] = await Promise.all([api.deliver([{ path: 'north.tif', file: NORTH }], 'EPSG:2154', 'north'), api.deliver([{ path: 'south.tif', file: SOUTH }], 'EPSG:2154', 'south')]);
  expect([n.status, s.status]).toEqual(['CLOSED', 'CLOSED']);
  const north = await built(api, await api.execute({ upload: [n._id] }, PNG, 'north'));
  const chained = await built(api, await api.execute({ upload: [s._id], stored_data: [north] }, {}, 'north+south'));
  await publish(api, LAYER, chained);
  return { northUpload: n._id, southUpload: s._id, north, chained };
}

/** Every tile address of levels 0..BOTTOM over France and around it. */
function addresses(): { z: number; x: number; y: number }[] {
  const [minX, minY] = lonLatToMercator(-6, 41);
  const [maxX, maxY] = lonLatToMercator(10, 52);
  const out: { z: number; x: number; y: number }[] = [];
  for (let z = 0; z <= BOTTOM; z++) {
    const l = tileLimitsForBounds(PM, z, { minX, minY, maxX, maxY })!;
    for (let y = l.minY; y <= l.maxY; y++) for (let x = l.minX; x <= l.maxX; x++) out.push({ z, x, y });
  }
  return out;
}

/** What a server answers for each tile of a layer: status and a hash of the bytes. */
async function served(base: string, layer = LAYER): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const tiles = addresses();
  // a few at a time: the S3 side makes one ranged GET per tile not in its cache
  for (let i = 0; i < tiles.length; i += 8) {
    await Promise.all(
      tiles.slice(i, i + 8).map(async ({ z, x, y }) => {
        const r = await fetch(`${base}/tiles/${layer}/${z}/${x}/${y}.png`);
        const b = Buffer.from(await r.arrayBuffer());
        out.set(`${z}/${x}/${y}`, `${r.status} ${createHash('sha1').update(b).digest('hex')}`);
      }),
    );
  }
  return out;
}

/** Keys of the objects under the storage URL's pyramids/{folder}/ (or uploads/{id}/). */
async function objects(folder: string, kind = 'pyramids'): Promise<string[]> {
  const { bucket, prefix } = parseStorageUrl(storageUrl);
  const under = `${prefix}/${kind}/${folder}/`;
  const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: under }));
  return (r.Contents ?? []).map((c) => c.Key!.slice(under.length)).sort();
}

describe.runIf(engines)('pyramids in S3-compatible storage', () => {
  beforeAll(async () => {
    s3 = s3Client(engines!);
    await Promise.all(
      (['local', 'remote'] as const).map(async (k) => {
        const t = await startTuile((k === 'local' ? local : remote).path, k === 'local' ? { TUILE_WORKERS: '2' } : remoteEnv);
        const api = new Api(t.base);
        await api.init();
        servers[k] = { t, api, ids: {} };
      }),
    );
    // one after the other: both build with two workers on a small machine
    for (const k of ['local', 'remote'] as const) servers[k].ids = await scenario(servers[k].api);
  }, 400_000);

  afterAll(async () => {
    await Promise.all(Object.values(servers).map((s) => s.t.stop()));
    local.cleanup();
    remote.cleanup();
    s3?.destroy();
  });

  it('serves through HTTP, from the store, the same bytes as the same build on local disk', async () => {
    const [a, b] = await Promise.all([served(servers.local.t.base), served(servers.remote.t.base)]);
    // tiles with data differ from one another: more than a few distinct bodies is more than blank tiles
    expect(new Set([...a.values()].filter((v) => v.startsWith('200'))).size).toBeGreaterThan(40);
    expect([...a.values()].some((v) => v.startsWith('404'))).toBe(true);
    for (const [k, v] of a) expect(b.get(k), k).toBe(v);
    expect(b.size).toBe(a.size);
  });

  it('keeps the pyramids as objects (archive and descriptor), nothing under the data folder', async () => {
    const { north, chained } = servers.remote.ids;
    for (const id of [north, chained]) {
      expect(await objects(id)).toEqual(['pyramid.json', 'tiles.pmtiles']);
      expect(existsSync(join(remote.path, 'pyramids', id))).toBe(false);
    }
    expect(await objects(servers.remote.ids.northUpload, 'uploads')).toEqual(['north.tif']);
    expect(await objects(servers.remote.ids.southUpload, 'uploads')).toEqual(['south.tif']);
    // the stored data's size and extent came from the stored descriptor, as on disk
    const [l, r] = await Promise.all(
      (['local', 'remote'] as const).map(async (k) => (await servers[k].api.call('GET', `${servers[k].api.d}/stored_data/${servers[k].ids.chained}`)).body),
    );
    expect(r.type_infos).toEqual(l.type_infos);
    expect(r.extent).toEqual(l.extent);
  });

  it('opens an archive in the store with one ranged GET (two with leaves), and reads a tile with one more', async () => {
    const client = s3Client(engines!);
    const requests: string[] = [];
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Key?: string; Range?: string };
        requests.push(`${context.commandName} ${input.Key!.split('/').slice(-1)[0]} ${input.Range ?? 'whole'}`);
        return next(args);
      },
      { step: 'initialize', name: 'countRequests' },
    );
    const { chained } = servers.remote.ids;
    // any folder path: the store knows a pyramid by its folder's name
    const storage = new S3Storage(storageUrl, parseStorageUrl(storageUrl), engines!.s3Endpoint, client);
    const chain = await PyramidChain.open(join('/elsewhere/pyramids', chained), storage);
    try {
      expect(requests.filter((r) => r.includes('pyramid.json')).sort()).toEqual(['GetObjectCommand pyramid.json whole', 'GetObjectCommand pyramid.json whole']);
      const archive = requests.filter((r) => r.includes('tiles.pmtiles'));
      expect(archive.filter((r) => r.endsWith('bytes=0-16383'))).toHaveLength(2);
      expect(archive.length).toBeLessThanOrEqual(4);
      requests.length = 0;
      const held = [...chain.tiles()].filter((t) => t.z === BOTTOM);
      for (const t of held) expect(chain.locate(t)).toBeDefined();
      expect(requests).toEqual([]);
      // tiles of each member, each one ranged GET at most (none for what came with the first 16 KiB), the bytes HTTP serves
      const [own, parent] = chain.ids;
      const some = [...held.filter((t) => chain.locate(t) === own).slice(0, 3), ...held.filter((t) => chain.locate(t) === parent).slice(0, 3)];
      expect(some).toHaveLength(6);
      for (const t of some) {
        const hit = (await chain.getTile(t))!;
        const served = Buffer.from(await (await fetch(`${servers.remote.t.base}/tiles/${LAYER}/${t.z}/${t.x}/${t.y}.png`)).arrayBuffer());
        expect(Buffer.from(hit.data).equals(served), `${t.z}/${t.x}/${t.y}`).toBe(true);
      }
      expect(requests.length).toBeGreaterThan(0);
      expect(requests.length).toBeLessThanOrEqual(some.length);
      for (const r of requests) expect(r).toMatch(/^GetObjectCommand tiles\.pmtiles bytes=\d+-\d+$/);
    } finally {
      await chain.close();
      client.destroy();
    }
  });

  it('serves the same tiles after a restart, reading the archives from the store again', async () => {
    const before = await served(servers.remote.t.base);
    await servers.remote.t.stop();
    // as a node that did not receive the deliveries: only the store has their files now
    for (const id of [servers.remote.ids.northUpload, servers.remote.ids.southUpload]) rmSync(join(remote.path, 'uploads', id, 'data'), { recursive: true, force: true });
    servers.remote.t = await startTuile(remote.path, remoteEnv);
    servers.remote.api = new Api(servers.remote.t.base);
    await servers.remote.api.init();
    const after = await served(servers.remote.t.base);
    for (const [k, v] of before) expect(after.get(k), k).toBe(v);
  });

  it('builds an upload whose files only the store has, the same pyramid as from disk', async () => {
    const { api, ids } = servers.remote;
    ids.again = await built(api, await api.execute({ upload: [ids.northUpload] }, PNG, 'north again'));
    expect(existsSync(join(remote.path, 'uploads', ids.northUpload, 'data', 'north.tif'))).toBe(true);
    await Promise.all([publish(servers.local.api, 'north', servers.local.ids.north), publish(api, 'north', ids.again)]);
    const [a, b] = await Promise.all([served(servers.local.t.base, 'north'), served(servers.remote.t.base, 'north')]);
    expect(new Set([...a.values()].filter((v) => v.startsWith('200'))).size).toBeGreaterThan(20);
    for (const [k, v] of a) expect(b.get(k), k).toBe(v);
  });

  it('fuses the chain from the store into one pyramid in the store that serves the same bytes', async () => {
    const { api, ids } = servers.remote;
    const fusion = (await api.call('GET', `${api.d}/processings`)).body.find((p: any) => p.name === 'Fusion de pyramides raster')._id;
    const e = await api.call('POST', `${api.d}/processings/executions`, { processing: fusion, inputs: { stored_data: [ids.chained] }, output: { stored_data: { name: 'flat' } }, parameters: {} });
    expect(e.status, JSON.stringify(e.body)).toBe(201);
    expect((await api.call('POST', `${api.d}/processings/executions/${e.body._id}/launch`)).status).toBe(200);
    const flat = await built(api, e.body);
    expect(await objects(flat)).toEqual(['pyramid.json', 'tiles.pmtiles']);
    await publish(api, 'flat', flat);
    const [a, b] = await Promise.all([served(servers.local.t.base), served(servers.remote.t.base, 'flat')]);
    // a 404's body names the layer: statuses everywhere, bytes where there is a tile
    for (const [k, v] of a) expect(v.startsWith('200') ? b.get(k) : b.get(k)?.slice(0, 3), k).toBe(v.startsWith('200') ? v : v.slice(0, 3));
  });

  it('deletes the objects of a deleted stored data or upload, and only those', async () => {
    const { api, ids } = servers.remote;
    const again = ids.again;
    expect(await objects(again)).toEqual(['pyramid.json', 'tiles.pmtiles']);
    // used by the chain, or served: refused, and kept
    expect((await api.call('DELETE', `${api.d}/stored_data/${again}`)).status).toBe(409);
    const offering = (await api.call('GET', `${api.d}/offerings`)).body.find((o: any) => o.layer_name === 'north');
    expect((await api.call('DELETE', `${api.d}/offerings/${offering._id}`)).status).toBe(204);
    for (let i = 0; i < 200 && (await api.call('GET', `${api.d}/offerings/${offering._id}`)).status !== 404; i++) await new Promise((r) => setTimeout(r, 50));
    const conf = (await api.call('GET', `${api.d}/configurations`)).body.find((c: any) => c.layer_name === 'north');
    expect((await api.call('DELETE', `${api.d}/configurations/${conf._id}`)).status).toBe(204);
    expect((await api.call('DELETE', `${api.d}/stored_data/${ids.north}`)).status).toBe(409);
    expect((await api.call('DELETE', `${api.d}/stored_data/${again}`)).status).toBe(204);
    expect(await objects(again)).toEqual([]);
    expect(await objects(ids.north)).toEqual(['pyramid.json', 'tiles.pmtiles']);
    expect((await fetch(`${servers.remote.t.base}/tiles/${LAYER}/5/16/11.png`)).status).toBe(200);
    expect((await api.call('DELETE', `${api.d}/uploads/${ids.southUpload}`)).status).toBe(204);
    expect(await objects(ids.southUpload, 'uploads')).toEqual([]);
    expect(await objects(ids.northUpload, 'uploads')).toEqual(['north.tif']);
  });
});
