// The first-start demo killed (kill -9) part way, twice: each start resumes it, and the data folder ends
// as an uninterrupted demo leaves it (one layer serving north and south, one entity of each, nothing
// unstable left over); once finished, it never runs again.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../helpers/fixtures.js';
import { Api, freePort, startTuile, TOKEN, type TuileProcess } from '../helpers/tuile.js';

const data = tempDir('tuile-demo-');
let proc: ChildProcess | undefined;
let t: TuileProcess | undefined;

afterAll(async () => {
  proc?.kill('SIGKILL');
  await t?.stop('SIGKILL');
  data.cleanup();
});

/** Entries of a folder of the data folder (none while it does not exist). */
function entries(name: string): string[] {
  const dir = join(data.path, name);
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Starts tuile with the demo on and kills it (SIGKILL) once its output matches `when` and the data folder
 * shows the step under way (`then`); returns the output. */
async function killWhen(when: RegExp, then: () => boolean): Promise<string> {
  let out = '';
  proc = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(await freePort()), TUILE_DATA_DIR: data.path, TUILE_DEMO: '1', TUILE_WORKERS: '1', TUILE_ADMIN_TOKEN: TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 90_000;
  while (!when.test(out) || !then()) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`never saw ${when} then ${then}:\n${out}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const p = proc;
  await new Promise((r) => {
    p.once('exit', r);
    p.kill('SIGKILL');
  });
  expect(out).not.toMatch(/serving \d+ layer/);
  return out;
}

describe('the first-start demo, killed part way', () => {
  it('resumes at each start and ends whole, with nothing half-made left', async () => {
    // during the north's build: its folder is in pyramids/
    expect(await killWhen(/empty data folder: running the reference scenario/, () => entries('pyramids').length > 0)).not.toMatch(/resuming/);
    expect(existsSync(join(data.path, 'demo.pending'))).toBe(true);
    // during the south's delivery: its upload is the second of uploads/
    expect(await killWhen(/north published as france_relief/, () => entries('uploads').length > 1)).toMatch(/the demo was interrupted by a stop: resuming it/);

    t = await startTuile(data.path, { TUILE_DEMO: '1' });
    expect(t.output()).toMatch(/resuming it/);
    expect(t.output()).toMatch(/france_relief synchronised on the chained pyramid/);
    expect(existsSync(join(data.path, 'demo.pending'))).toBe(false);
    const api = new Api(t.base);
    await api.init();
    const uploads = (await api.call('GET', `${api.d}/uploads?limit=100`)).body as any[];
    expect(uploads.map((u) => `${u.name}:${u.status}`).sort()).toEqual(['France relief, north:CLOSED', 'France relief, south:CLOSED']);
    const stored = (await api.call('GET', `${api.d}/stored_data?limit=100`)).body as any[];
    expect(stored.map((s) => `${s.name}:${s.status}`).sort()).toEqual(['france_relief_north:GENERATED', 'france_relief_north_south:GENERATED']);
    const offerings = (await api.call('GET', `${api.d}/offerings?limit=100`)).body as any[];
    expect(offerings.map((o) => `${o.layer_name}:${o.status}`)).toEqual(['france_relief:PUBLISHED']);
    const whole = stored.find((s) => s.name === 'france_relief_north_south')._id;
    const conf = (await api.call('GET', `${api.d}/configurations?layer_name=france_relief`)).body as any[];
    expect(conf).toHaveLength(1);
    expect(conf[0].type_infos.used_data[0].stored_data).toBe(whole);
    for (const tile of ['7/64/43', '7/64/46']) expect((await fetch(`${t.base}/tiles/france_relief/${tile}.png`)).status, tile).toBe(200);
    expect(await t.stop()).toBe(0);

    // finished: never again
    t = await startTuile(data.path, { TUILE_DEMO: '1' });
    expect(t.output()).not.toMatch(/reference scenario|resuming/);
    expect(await t.stop()).toBe(0);
  });
});
