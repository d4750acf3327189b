// Starting again after the unlucky cases, on real processes: a second tuile on the same data folder is
// refused (the lock names the holder), a killed one's lock is taken over, serving processes that cannot
// start are not forked forever, a push cut by kill -9 and folders nothing references are collected at
// start, and an unreadable state.json gives way to the previous generation with a warning.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, ROOT, tempDir } from '../helpers/fixtures.js';
import { Api, freePort, startTuile, TOKEN, type TuileProcess } from '../helpers/tuile.js';

const data = tempDir('tuile-recovery-');
let t: TuileProcess | undefined;

afterAll(async () => {
  await t?.stop('SIGKILL');
  data.cleanup();
});

/** Runs tuile expected to give up: its exit code and everything it printed. */
function runToExit(env: Record<string, string>, timeoutMs = 60_000): Promise<{ code: number | string | null; out: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let out = '';
    const p = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
      env: { ...process.env, HOST: '127.0.0.1', TUILE_DEMO: '0', TUILE_ADMIN_TOKEN: TOKEN, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`still running after ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, out, ms: Date.now() - t0 });
    });
  });
}

describe('one tuile per data folder', () => {
  it('a second one is refused with the holder pid; a killed holder lock is taken over', async () => {
    t = await startTuile(data.path);
    const second = await runToExit({ PORT: String(await freePort()), TUILE_DATA_DIR: data.path, TUILE_WORKERS: '1' });
    expect(second.code).toBe(1);
    expect(second.out).toContain(`in use by another tuile (pid ${t.proc.pid}`);
    // the first one was not disturbed
    expect((await fetch(`${t.base}/health`)).status).toBe(200);
    expect(await t.stop('SIGKILL')).toBe('SIGKILL');
    expect(readFileSync(join(data.path, 'tuile.lock'), 'utf8').trim()).toBe(String(t.proc.pid));
    t = await startTuile(data.path);
    expect(t.output()).toContain(`taking over the lock of ${data.path} from pid`);
    expect(readFileSync(join(data.path, 'tuile.lock'), 'utf8').trim()).toBe(String(t.proc.pid));
    expect(await t.stop()).toBe(0);
    // a clean stop releases it
    expect(existsSync(join(data.path, 'tuile.lock'))).toBe(false);
    // a lock whose pid now belongs to another program (a pid reused after a reboot) is stale too
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      writeFileSync(join(data.path, 'tuile.lock'), `${other.pid}\n`);
      t = await startTuile(data.path);
      expect(t.output()).toContain(`from pid ${other.pid}, which no longer runs tuile`);
      expect(await t.stop()).toBe(0);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('serving processes that die at start (port in use) are tried a few times, then tuile exits', async () => {
    const squatter = createServer((_, res) => res.end('not tuile'));
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', () => r()));
    const port = (squatter.address() as { port: number }).port;
    const other = tempDir('tuile-recovery-port-');
    try {
      const r = await runToExit({ PORT: String(port), TUILE_DATA_DIR: other.path, TUILE_WORKERS: '2' });
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/EADDRINUSE/);
      expect(r.out).toMatch(/3 serving processes in a row exited before serving .*not starting another/);
      expect(r.out.match(/exited \(1\); starting another/g)?.length ?? 0, r.out).toBeLessThanOrEqual(2);
    } finally {
      squatter.close();
      other.cleanup();
    }
  });
});

describe('orphans under the data folder', () => {
  it('a push cut by kill -9 and folders the state does not reference are removed at start, and logged', async () => {
    t = await startTuile(data.path);
    const api = new Api(t.base);
    await api.init();
    const north = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
    const e = await api.execute({ upload: [north._id] }, { compression: 'png', bottom: 5 }, 'kept');
    const sd = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS'])).entity.output.stored_data._id;
    // an injection: its pyramid is a second generation that reads through the first, both must stay
    const inj = await api.call('POST', `${api.d}/processings/executions`, {
      processing: await api.processing(),
      inputs: { upload: [north._id] },
      output: { stored_data: { _id: sd } },
      parameters: {},
    });
    expect(inj.status).toBe(201);
    await api.call('POST', `${api.d}/processings/executions/${inj.body._id}/launch`);
    expect((await api.until(`${api.d}/processings/executions/${inj.body._id}`, ['SUCCESS', 'FAILURE'])).entity.status).toBe('SUCCESS');
    const open = await api.call('POST', `${api.d}/uploads`, { name: 'cut', description: 'cut push', type: 'RASTER', srs: 'EPSG:2154' });
    // a push that never ends: the server is killed while it streams into its .part file
    const port = Number(new URL(t.base).port);
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: `${api.d}/uploads/${open.body._id}/data?path=data/cut.tif`, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/octet-stream', 'Content-Length': String(10 << 20) } });
    req.on('error', () => {});
    req.write(Buffer.alloc(256 << 10, 1));
    const upDir = join(data.path, 'uploads', open.body._id);
    const deadline = Date.now() + 10_000;
    const parts = () => (existsSync(upDir) ? readdirSync(upDir, { recursive: true }).map(String).filter((n) => n.endsWith('.part')) : []);
    while (parts().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(parts()).toHaveLength(1);
    expect(await t.stop('SIGKILL')).toBe('SIGKILL');
    req.destroy();
    // what a kill between a DELETE's commit and its removal leaves, and a build's temporary folder
    const ghostUpload = join(data.path, 'uploads', '0b6c1f9e-0000-4000-8000-000000000001');
    mkdirSync(join(ghostUpload, 'data'), { recursive: true });
    writeFileSync(join(ghostUpload, 'data', 'x.tif'), 'x');
    const ghostPyramid = join(data.path, 'pyramids', '0b6c1f9e-0000-4000-8000-000000000002');
    mkdirSync(ghostPyramid);
    writeFileSync(join(ghostPyramid, 'pyramid.json'), '{}');
    const staleGeneration = join(data.path, 'pyramids', `${sd}.zzzz`);
    mkdirSync(staleGeneration);
    const before = readdirSync(join(data.path, 'pyramids')).filter((n) => n.startsWith(sd));
    expect(before.length).toBe(3); // the first generation, the injected one, the stale one

    t = await startTuile(data.path);
    const out = t.output();
    expect(out).toMatch(new RegExp(`removed uploads/${open.body._id}/[^ ]+\\.part \\(a push interrupted by a stop\\)`));
    expect(out).toContain(`removed uploads/0b6c1f9e-0000-4000-8000-000000000001 (no upload of that id in the state)`);
    expect(out).toContain(`removed pyramids/0b6c1f9e-0000-4000-8000-000000000002 (no stored data reads it)`);
    expect(out).toContain(`removed pyramids/${sd}.zzzz (no stored data reads it)`);
    expect(parts()).toEqual([]);
    expect(existsSync(ghostUpload) || existsSync(ghostPyramid) || existsSync(staleGeneration)).toBe(false);
    // everything the state references is still there and works
    expect(existsSync(join(data.path, 'uploads', north._id, 'data', 'north.tif'))).toBe(true);
    expect(readdirSync(join(data.path, 'pyramids')).filter((n) => n.startsWith(sd)).sort()).toEqual(before.filter((n) => n !== `${sd}.zzzz`).sort());
    const api2 = new Api(t.base);
    await api2.init();
    await api2.publish(api2.configuration('orphans', sd, '5'));
    expect((await fetch(`${t.base}/tiles/orphans/5/16/11.png`)).status).toBe(200);
    expect(await t.stop()).toBe(0);
  });
});

describe('an unreadable state.json', () => {
  it('gives way to the previous generation state.json.1, with a loud warning; the bad file is kept aside', async () => {
    t = await startTuile(data.path);
    const api = new Api(t.base);
    await api.init();
    const a = await api.call('POST', `${api.d}/uploads`, { name: 'before', description: 'x', type: 'RASTER', srs: 'EPSG:2154' });
    const b = await api.call('POST', `${api.d}/uploads`, { name: 'last', description: 'x', type: 'RASTER', srs: 'EPSG:2154' });
    expect(await t.stop()).toBe(0);
    const file = join(data.path, 'state.json');
    const previous = JSON.parse(readFileSync(`${file}.1`, 'utf8'));
    expect(Object.keys(previous.uploads)).toContain(a.body._id);
    expect(Object.keys(previous.uploads)).not.toContain(b.body._id);
    const bad = readFileSync(file, 'utf8').slice(0, 100); // a torn write
    writeFileSync(file, bad);

    t = await startTuile(data.path);
    expect(t.output()).toMatch(/WARNING: the state .*state\.json cannot be read \(invalid JSON/);
    expect(t.output()).toMatch(/WARNING: starting from the previous generation .*state\.json\.1/);
    const kept = readdirSync(data.path).filter((n) => n.startsWith('state.json.corrupt-'));
    expect(kept).toHaveLength(1);
    expect(readFileSync(join(data.path, kept[0]), 'utf8')).toBe(bad);
    const api2 = new Api(t.base);
    await api2.init();
    expect((await api2.call('GET', `${api2.d}/uploads/${a.body._id}`)).status).toBe(200);
    expect((await api2.call('GET', `${api2.d}/uploads/${b.body._id}`)).status).toBe(404);
    // it goes on from there: a change is saved, and the next start reads state.json again, silently
    expect((await api2.call('POST', `${api2.d}/uploads`, { name: 'after', description: 'x', type: 'RASTER', srs: 'EPSG:2154' })).status).toBe(201);
    expect(await t.stop()).toBe(0);
    t = await startTuile(data.path);
    expect(t.output()).not.toMatch(/WARNING/);
    expect(await t.stop()).toBe(0);
    // with neither generation readable, it refuses to start rather than start empty
    writeFileSync(file, '{');
    writeFileSync(`${file}.1`, '');
    const r = await runToExit({ PORT: String(await freePort()), TUILE_DATA_DIR: data.path, TUILE_WORKERS: '1' });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/cannot be read and there is no readable previous generation/);
  });
});
