// npm start's path as a user meets it: an empty data folder gets the demo (the reference scenario run on
// data/demo through the management API), two serving processes answer on one port with the same layers,
// the API through either of them, /metrics sums both, SIGTERM stops them all.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../helpers/fixtures.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const data = tempDir('tuile-start-');
let proc: ChildProcess;
let base = '';
let output = '';

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  proc = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), TUILE_DATA_DIR: data.path, TUILE_WORKERS: '2' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const deadline = Date.now() + 90_000;
  // the whole banner: its lines may come in more than one read
  while (!/serving 1 layer[\s\S]*france_relief: http\S*\n/.test(output)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`server did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});

afterAll(async () => {
  if (proc.exitCode === null) {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
  data.cleanup();
});

describe('npm start on an empty data folder', () => {
  it('runs the reference scenario on the demo, prints the admin token once and the URLs', async () => {
    const token = readFileSync(join(data.path, 'admin-token'), 'utf8').trim();
    expect(statSync(join(data.path, 'admin-token')).mode & 0o777).toBe(0o600);
    expect(output).toContain(token);
    expect(output).toMatch(/france_relief synchronised on the chained pyramid/);
    expect(output).toMatch(/WMTS capabilities: +http:\/\/127\.0\.0\.1:\d+\/wmts\/1\.0\.0\/WMTSCapabilities\.xml/);
    expect(output).toMatch(/with 2 process\(es\)/);
    // the API answers through every serving process (new connections spread over them)
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${base}/api/datastores`, { headers: { Authorization: `Bearer ${token}`, Connection: 'close' } });
      expect(r.status).toBe(200);
      const [d] = await r.json();
      const offerings = await (await fetch(`${base}/api/datastores/${d._id}/offerings`, { headers: { Authorization: `Bearer ${token}`, Connection: 'close' } })).json();
      expect(offerings).toHaveLength(1);
      expect(offerings[0]).toMatchObject({ layer_name: 'france_relief', status: 'PUBLISHED' });
    }
    // the chained pyramid serves both deliveries: a tile in the north and one in the south
    for (const t of ['7/64/43', '7/64/46']) {
      const r = await fetch(`${base}/tiles/france_relief/${t}.png`, { headers: { Connection: 'close' } });
      expect(r.status, t).toBe(200);
    }
  });

  it('every process serves the layer, and /metrics sums them', async () => {
    // new connections are spread over the processes: enough of them reach both
    for (let i = 0; i < 40; i++) {
      const r = await fetch(`${base}/tiles/france_relief/5/16/11.png`, { headers: { Connection: 'close' } });
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('image/png');
      await r.arrayBuffer();
    }
    const caps = await (await fetch(`${base}/wmts/1.0.0/WMTSCapabilities.xml`)).text();
    expect(caps).toContain('<ows:Identifier>france_relief</ows:Identifier>');
    const metrics = await (await fetch(`${base}/metrics`, { headers: { Connection: 'close' } })).text();
    expect(metrics).toMatch(/^tuile_processes 2$/m);
    const served = Number(/tuile_http_requests_total\{route="\/tiles\/:layer\/:z\/:x\/:file",status="200"\} (\d+)/.exec(metrics)?.[1]);
    expect(served).toBe(42); // and the two of the test above
  });

  it('stops on SIGTERM', async () => {
    proc.kill('SIGTERM');
    const code = await new Promise((r) => proc.once('exit', (c, s) => r(c ?? s)));
    expect([0, 'SIGTERM']).toContain(code);
  });
});
