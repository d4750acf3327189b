// The layer switch runs outside the state's serial queue (issue 16): with one of two serving processes
// stopped (SIGSTOP, as a process stuck in a long GC or a swapped-out machine would be), a write that
// changes the layers answers only once the switch gave up on it, but an unrelated write answers at once;
// the stopped process catches up when it runs again. Against `node dist/main.js`, over HTTP.
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, TOKEN, type TuileProcess } from '../helpers/tuile.js';

/** The switch timeout of src/main.ts: how long a switch waits for every serving process. */
const SWITCH_TIMEOUT_MS = 5000;
const LAYER = 'stuck';
const TILE = `/tiles/${LAYER}/4/8/5.png`;

const data = tempDir('tuile-switch-');
let t: TuileProcess;
let api: Api;
let offering = '';
let stopped = 0;

/** The serving processes: the children of the primary. */
function workerPids(primary: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // the command may hold spaces and parentheses: the fields after its closing one are fixed
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === primary) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * One request on a connection of its own: the primary hands a new connection only to a worker that took
 * its previous one, so a stopped worker gets at most one after it stopped. Undefined on timeout.
 */
function fresh(method: string, path: string, body?: unknown, timeoutMs = 15_000): Promise<{ status: number; body: any; ms: number } | undefined> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      `${t.base}${path}`,
      {
        method,
        agent: false,
        headers: { Authorization: `Bearer ${TOKEN}`, Connection: 'close', ...(payload ? { 'Content-Type': 'application/json' } : {}) },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // a tile, or text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, ms: Date.now() - t0 });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => {
      req.destroy();
      resolve(undefined);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

beforeAll(async () => {
  t = await startTuile(data.path, { TUILE_WORKERS: '2' });
  api = new Api(t.base);
  await api.init();
  const north = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
  const e = await api.execute({ upload: [north._id] }, { compression: 'png', bottom: 5 }, 'north');
  const sd = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS'])).entity.output.stored_data._id;
  const conf = (await api.call('POST', `${api.d}/configurations`, api.configuration(LAYER, sd, '5'))).body;
  offering = (await api.call('POST', `${api.d}/configurations/${conf._id}/offerings`, { endpoint: await api.endpoint() })).body._id;
  await api.until(`${api.d}/offerings/${offering}`, ['PUBLISHED']);
});

afterAll(async () => {
  if (stopped) process.kill(stopped, 'SIGCONT');
  await t?.stop();
  data.cleanup();
});

describe('a stuck serving process', () => {
  it('delays the answer of the write that switches layers, not the writes after it', async () => {
    const pids = workerPids(t.proc.pid!);
    expect(pids).toHaveLength(2);
    stopped = pids[0];
    process.kill(stopped, 'SIGSTOP');
    // the primary hands the stopped worker one more connection (it is first in line within two): that
    // request is given up after a second, and every later connection goes to the running worker
    let lost = false;
    for (let i = 0; i < 4 && !lost; i++) lost = (await fresh('GET', TILE, undefined, 1000)) === undefined;
    expect(lost).toBe(true);
    expect((await fresh('GET', TILE, undefined, 1000))?.status).toBe(200);

    const patch = fresh('PATCH', `${api.d}/offerings/${offering}`, { available: false });
    // the commit is made once the running worker no longer serves the layer
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await fresh('GET', TILE, undefined, 1000);
      if (r?.status === 404) break;
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((res) => setTimeout(res, 50));
    }
    const unrelated = await fresh('POST', `${api.d}/uploads`, { name: 'unrelated', description: 'while a switch waits', type: 'RASTER', srs: 'EPSG:2154' });
    expect(unrelated?.status).toBe(201);
    expect(unrelated!.ms).toBeLessThan(SWITCH_TIMEOUT_MS / 5);

    const patched = await patch;
    expect(patched?.status).toBe(200);
    expect(patched!.body.available).toBe(false);
    // it answered once the switch had its time: it says what every process that answers serves
    expect(patched!.ms).toBeGreaterThanOrEqual(SWITCH_TIMEOUT_MS - 500);
    expect(t.output()).toMatch(/layers generation \d+ not confirmed by every process within 5000 ms/);
  });

  it('catches up when it runs again', async () => {
    process.kill(stopped, 'SIGCONT');
    stopped = 0;
    // new connections alternate between the two processes: every one no longer serves the layer
    const deadline = Date.now() + 10_000;
    let statuses: number[] = [];
    do {
      statuses = [];
      for (let i = 0; i < 6; i++) statuses.push((await fresh('GET', TILE, undefined, 5000))?.status ?? 0);
      if (statuses.every((s) => s === 404)) break;
      await new Promise((res) => setTimeout(res, 100));
    } while (Date.now() < deadline);
    expect(statuses).toEqual([404, 404, 404, 404, 404, 404]);
    const o = await api.call('GET', `${api.d}/offerings/${offering}`);
    expect(o.body.available).toBe(false);
  });
});
