// The life cycle: SIGTERM during a build stops it cleanly (FAILURE, nothing left, state saved) and during
// load lets in-flight requests finish; idle keep-alive sockets end without a reset and a request in flight
// is answered with `Connection: close`; the next start recovers and serves.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, TOKEN, type TuileProcess } from '../helpers/tuile.js';

/** A raw HTTP/1.1 connection: what it received, and how it ended (`end`, or the error code). */
function rawSocket(port: number): Promise<{ sock: Socket; received: () => string; ended: Promise<string> }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const sock = connect(port, '127.0.0.1');
    const ended = new Promise<string>((r) => {
      sock.on('end', () => r('end'));
      sock.on('error', (err: NodeJS.ErrnoException) => r(err.code ?? String(err)));
    });
    sock.on('data', (d) => (data += d));
    sock.once('connect', () => resolve({ sock, received: () => data, ended }));
    sock.once('error', reject);
  });
}

/** Tries new connections until one is refused (the server stopped listening): false after 10 s. */
async function refused(port: number): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const code = await new Promise<string>((r) => {
      const sock = connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        r('connected');
      });
      sock.once('error', (err: NodeJS.ErrnoException) => r(err.code ?? String(err)));
    });
    if (code === 'ECONNREFUSED') return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

const data = tempDir('tuile-life-');
let t: TuileProcess | undefined;

afterAll(async () => {
  await t?.stop('SIGKILL');
  data.cleanup();
});

describe('SIGTERM', () => {
  let published = '';

  it('during a build: the build stops, the execution is FAILURE in the saved state, nothing is left', async () => {
    t = await startTuile(data.path, { TUILE_WORKERS: '2' });
    const api = new Api(t.base);
    await api.init();
    const north = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
    const sd = await api.compute({ upload: [north._id] }, { compression: 'png', bottom: 6 }, 'north');
    published = (await api.publish(api.configuration('life', sd, '6'))).offering;

    const big = await api.deliver([{ path: 'miriam.tif', file: fixture('modis_miriam_4326.tif') }], 'EPSG:4326', 'miriam');
    const e2 = await api.execute({ upload: [big._id] }, { compression: 'jpg', bottom: 12 }, 'miriam');
    await api.building(`${api.d}/processings/executions/${e2._id}`);
    const t0 = Date.now();
    expect(await t.stop('SIGTERM')).toBe(0);
    expect(Date.now() - t0).toBeLessThan(20_000);
    const state = JSON.parse(readFileSync(join(data.path, 'state.json'), 'utf8'));
    const e = state.executions[e2._id];
    expect(e.status).toBe('FAILURE');
    expect(e.logs[e.logs.length - 1]).toMatch(/server stopped during the execution; the build was interrupted/);
    expect(state.stored_data[e2.output.stored_data._id].status).toBe('UNSTABLE');
    expect(existsSync(join(data.path, 'pyramids', e2.output.stored_data._id))).toBe(false);
    expect(readdirSync(join(data.path, 'pyramids')).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('under load: in-flight requests finish whole, then it exits; the next start serves again', async () => {
    t = await startTuile(data.path, { TUILE_WORKERS: '2' });
    const api = new Api(t.base);
    await api.init();
    expect((await api.call('GET', `${api.d}/offerings/${published}`)).body.status).toBe('PUBLISHED');
    const base = t.base;
    let ok = 0;
    let refused = 0;
    const broken: string[] = [];
    let stop = false;
    const tiles = ['5/16/11', '6/32/22', '6/33/22', '4/8/5', '3/4/2'];
    const loop = async (i: number) => {
      for (let n = 0; !stop; n++) {
        try {
          const r = await fetch(`${base}/tiles/life/${tiles[(i + n) % tiles.length]}.png`);
          const body = new Uint8Array(await r.arrayBuffer());
          if (r.status !== 200 || body.length !== Number(r.headers.get('content-length'))) broken.push(`${r.status} ${body.length}`);
          else ok++;
        } catch (err) {
          // after the listening sockets close, new connections are refused: that is the expected end
          const code = ((err as Error).cause as { code?: string } | undefined)?.code;
          if (code === 'ECONNREFUSED') {
            refused++;
            await new Promise((r) => setTimeout(r, 20));
          } else broken.push(String(code ?? err));
        }
      }
    };
    const loops = Array.from({ length: 16 }, (_, i) => loop(i));
    // under load: once tiles are being answered, not after a guessed delay
    const deadline = Date.now() + 30_000;
    while (ok < 100 && broken.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(ok).toBeGreaterThanOrEqual(100);
    const exit = t.stop('SIGTERM');
    expect(await exit).toBe(0);
    stop = true;
    await Promise.all(loops);
    expect(ok).toBeGreaterThan(50);
    // a request in flight when SIGTERM came is answered whole, never cut, and no keep-alive socket is
    // reset under a request (answers say close; idle sockets end on their keep-alive timeout)
    expect(broken).toEqual([]);
    expect(refused).toBeGreaterThan(0);

    t = await startTuile(data.path);
    const again = await fetch(`${t.base}/tiles/life/5/16/11.png`);
    expect(again.status).toBe(200);
  });

  it('idle keep-alive sockets end cleanly, and a request in flight is answered with Connection: close', async () => {
    await t?.stop();
    t = await startTuile(data.path, { TUILE_WORKERS: '2' });
    const api = new Api(t.base);
    await api.init();
    const up = (await api.call('POST', `${api.d}/uploads`, { name: 'slow', description: 'x', type: 'RASTER', srs: 'EPSG:2154' })).body;
    const port = Number(new URL(t.base).port);
    // idle: each socket made one request and kept the connection open, spread over both processes
    const idle = await Promise.all(Array.from({ length: 8 }, () => rawSocket(port)));
    for (const c of idle) c.sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    const deadline = Date.now() + 10_000;
    while (idle.some((c) => !c.received().includes('\r\n\r\n')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // in flight: a push whose body is half sent when SIGTERM comes
    const file = readFileSync(join(data.path, 'state.json'));
    const push = await rawSocket(port);
    push.sock.write(
      `POST ${api.d}/uploads/${up._id}/data?path=a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: ${file.length}\r\n\r\n`,
    );
    push.sock.write(file.subarray(0, 100));
    // the server has the request once its body is being written to a .part file of the upload
    const parts = join(data.path, 'uploads', up._id, 'data');
    const partDeadline = Date.now() + 10_000;
    const partSeen = () => existsSync(parts) && readdirSync(parts).some((f) => f.endsWith('.part'));
    while (!partSeen() && Date.now() < partDeadline) await new Promise((r) => setTimeout(r, 20));
    expect(partSeen(), push.received()).toBe(true);
    const exit = t.stop('SIGTERM');
    // the rest of the body goes once the server is stopping: it no longer accepts connections
    expect(await refused(port)).toBe(true);
    push.sock.write(file.subarray(100));
    expect(await push.ended).toBe('end');
    const head = push.received().split('\r\n\r\n')[0];
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(head, head).toMatch(/^connection: close$/im);
    expect(await Promise.all(idle.map((c) => c.ended))).toEqual(idle.map(() => 'end'));
    for (const c of idle) expect(c.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(await exit).toBe(0);
  });
});
