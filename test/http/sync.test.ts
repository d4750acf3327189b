// Hot swap under load (DESIGN 1 step 8 and 7), against `node dist/main.js` with two serving processes:
// tile requests racing syncs never fail, every answer is a whole tile of one of the two versions, a tile
// read through to the parent never changes, and once a sync is PUBLISHED every process serves the new
// version.
import { createHash } from 'node:crypto';
import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const NORTH = fixture('france_relief_north_2154.tif');
const SOUTH = fixture('france_relief_south_2154.tif');
const LAYER = 'race';
const SHARED = [4, 8, 5] as const; // covers both deliveries: changes with each sync
const NORTH_ONLY = [6, 32, 21] as const; // Paris basin: read through to the north in the chain

const data = tempDir('tuile-sync-');
let t: TuileProcess;
let api: Api;

beforeAll(async () => {
  t = await startTuile(data.path, { TUILE_WORKERS: '2' });
  api = new Api(t.base);
  await api.init();
});

afterAll(async () => {
  await t?.stop();
  data.cleanup();
});

interface Got {
  status: number;
  etag: string;
  bytes: Buffer;
  /** whether the request went on a connection an earlier request of the agent opened */
  reused: boolean;
}

/**
 * One GET through node:http: on a keep-alive agent (the last request of the connection with `close`), or
 * on a connection of its own closed after it.
 */
function get(path: string, agent?: Agent, close = false): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${t.base}${path}`,
      agent ? { agent, headers: close ? { Connection: 'close' } : {} } : { agent: false, headers: { Connection: 'close' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, etag: String(res.headers.etag ?? ''), bytes: Buffer.concat(chunks), reused: req.reusedSocket }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${path}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The tile's URL in each protocol (XYZ and WMTS rows from the top, TMS from the bottom). */
function urls([z, x, y]: readonly [number, number, number]): string[] {
  return [`/tiles/${LAYER}/${z}/${x}/${y}.png`, `/wmts/1.0.0/${LAYER}/normal/PM/${z}/${y}/${x}.png`, `/tms/1.0.0/${LAYER}/${z}/${x}/${2 ** z - 1 - y}.png`];
}

/** Waits for an execution; its stored data id once SUCCESS, else an error with its logs. */
async function built(e: any): Promise<string> {
  const { entity } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE', 'ABORTED']);
  if (entity.status !== 'SUCCESS') {
    const logs = await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`);
    throw new Error(`execution ${e._id} ${entity.status}:\n${[].concat(logs.body).join('\n')}`);
  }
  return e.output.stored_data._id;
}

const sha = (b: Buffer) => createHash('sha1').update(b).digest('hex');

describe('hot swap under load', () => {
  it('a tile request racing a sync never errors', async () => {
    const started = Date.now();
    // the north, and the south chained on it (the south delivered while the north builds)
    const [northUpload, southUpload] = await Promise.all([
      api.deliver([{ path: 'data/north.tif', file: NORTH }], 'EPSG:2154', 'north'),
      api.deliver([{ path: 'data/south.tif', file: SOUTH }], 'EPSG:2154', 'south'),
    ]);
    expect([northUpload.status, southUpload.status]).toEqual(['CLOSED', 'CLOSED']);
    const en = await api.execute({ upload: [northUpload._id] }, { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: 6 }, 'north');
    const north = await built(en);
    const es = await api.execute({ upload: [southUpload._id], stored_data: [north] }, {}, 'north+south');
    const whole = await built(es);

    // the north published as `race`
    const conf = await api.call('POST', `${api.d}/configurations`, api.configuration(LAYER, north, '6'));
    expect(conf.status).toBe(201);
    const o = await api.call('POST', `${api.d}/configurations/${conf.body._id}/offerings`, { endpoint: await api.endpoint(), open: true });
    expect(o.status).toBe(201);
    expect((await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'])).entity.status).toBe('PUBLISHED');

    const sync = async (storedData: string) => {
      const c = await api.call('PUT', `${api.d}/configurations/${conf.body._id}`, api.configuration(LAYER, storedData, '6'));
      expect(c.status).toBe(200);
      const r = await api.call('PUT', `${api.d}/offerings/${o.body._id}`);
      expect(r.status).toBe(200);
      expect(r.body.status).toBe('MODIFYING');
      const { entity } = await api.until(`${api.d}/offerings/${o.body._id}`, ['PUBLISHED', 'UNSTABLE'], 20_000);
      expect(entity.status).toBe('PUBLISHED');
    };

    // both versions of the shared tile, and the north-only tile, which the chain reads through
    const before = await get(urls(SHARED)[0]);
    const northOnly = await get(urls(NORTH_ONLY)[0]);
    expect(before.status).toBe(200);
    expect(northOnly.status).toBe(200);
    // ETags name the pyramid holding the tile: the north's for both tiles
    const northPyramid = before.etag.match(/^"(.+)-4-8-5"$/)?.[1];
    expect(northPyramid).toBeTruthy();
    expect(northOnly.etag).toBe(`"${northPyramid}-${NORTH_ONLY.join('-')}"`);
    await sync(whole);
    const after = await get(urls(SHARED)[0]);
    expect(after.status).toBe(200);
    expect(after.etag).toMatch(/^".+-4-8-5"$/);
    expect(after.etag).not.toBe(before.etag);
    expect(after.bytes.equals(before.bytes)).toBe(false);
    const northOnlyAfter = await get(urls(NORTH_ONLY)[0]);
    expect(northOnlyAfter.etag).toBe(northOnly.etag);
    expect(northOnlyAfter.bytes.equals(northOnly.bytes)).toBe(true);

    // every protocol serves the same bytes for the same tile
    for (const [tile, want] of [[SHARED, after], [NORTH_ONLY, northOnly]] as const) {
      for (const u of urls(tile)) {
        const g = await get(u);
        expect(g.status, u).toBe(200);
        expect(g.etag, u).toBe(want.etag);
        expect(g.bytes.equals(want.bytes), u).toBe(true);
      }
    }

    // valid (ETag, body) pairs per URL: a body of one version under the other's ETag is wrong too
    const valid = new Map<string, Set<string>>();
    for (const u of urls(SHARED)) valid.set(u, new Set([`${before.etag} ${sha(before.bytes)}`, `${after.etag} ${sha(after.bytes)}`]));
    for (const u of urls(NORTH_ONLY)) valid.set(u, new Set([`${northOnly.etag} ${sha(northOnly.bytes)}`]));
    const all = [...valid.keys()];

    // 16 fetchers: half on 8 keep-alive connections, half on a new connection per request
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 8 });
    let running = true;
    let answered = 0;
    const problems: string[] = [];
    const fetcher = async (i: number) => {
      let n = i;
      while (running) {
        const u = all[n++ % all.length];
        try {
          const g = await get(u, i % 2 === 0 ? keepAlive : undefined);
          answered++;
          if (g.status !== 200) problems.push(`${u}: ${g.status} ${g.bytes.toString().slice(0, 200)}`);
          else if (!valid.get(u)!.has(`${g.etag} ${sha(g.bytes)}`)) problems.push(`${u}: ${g.bytes.length} bytes under ETag ${g.etag} match no version`);
        } catch (err) {
          problems.push(`${u}: ${(err as Error).message}`);
        }
      }
    };
    const fetchers = Array.from({ length: 16 }, (_, i) => fetcher(i));

    // 10 syncs alternating the two stored data; once each is PUBLISHED, 20 fresh connections all get the
    // new version. Each asks /health first, then the tile (Connection: close) on the same socket: a
    // connection belongs to one process, so we know which process served each answer, and both must have.
    const pids = new Set<number>();
    const stale: string[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const target = i % 2 === 0 ? north : whole;
        const want = target === north ? before : after;
        await sync(target);
        const generations = new Map<number, number>();
        for (let k = 0; k < 20; k++) {
          const one = new Agent({ keepAlive: true, maxSockets: 1 });
          try {
            const h = await get('/health', one);
            const g = await get(urls(SHARED)[k % 3], one, true);
            expect(g.reused, 'the tile came on the /health connection').toBe(true);
            const health = JSON.parse(h.bytes.toString());
            pids.add(health.pid);
            generations.set(health.pid, health.generation);
            if (g.status !== 200 || g.etag !== want.etag || !g.bytes.equals(want.bytes)) {
              stale.push(`sync ${i + 1}, request ${k + 1} (process ${health.pid}): ${g.status} ${g.etag}, wanted ${want.etag}`);
            }
          } finally {
            one.destroy();
          }
        }
        // both processes served the new version, and have installed as many registries as each other
        expect(generations.size, `sync ${i + 1}: processes ${JSON.stringify([...generations])}`).toBe(2);
        expect(new Set(generations.values()).size, `sync ${i + 1}: generations ${JSON.stringify([...generations])}`).toBe(1);
      }
    } finally {
      running = false;
      await Promise.all(fetchers);
      keepAlive.destroy();
    }
    expect(problems.slice(0, 10), `${problems.length} bad answers of ${answered}`).toEqual([]);
    expect(stale).toEqual([]);
    expect(pids.size, 'both serving processes answered').toBe(2);
    expect(answered).toBeGreaterThan(200);
    expect(t.output()).not.toMatch(/not confirmed by every process|cannot load layers|left out/);
    console.log(`sync race: ${answered} tile answers during 10 syncs, ${pids.size} processes, ${((Date.now() - started) / 1000).toFixed(1)} s in all`);
  }, 90_000);
});
