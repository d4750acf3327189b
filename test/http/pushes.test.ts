// Pushes against `node dist/main.js` with the edges a real client hits: a close or a delete while a push is in
// flight, pushes into a closed upload, a push its client cuts.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture } from '../helpers/fixtures.js';
import { TOKEN, withTuile, type Api, type TuileProcess } from '../helpers/tuile.js';

const NORTH = readFileSync(fixture('france_relief_north_2154.tif'));
/** The north delivery with 4 MB of trailing zeros (still a valid TIFF): pushes that take long enough to overlap a close. */
const PADDED = Buffer.concat([NORTH, Buffer.alloc(4_000_000)]);

let t: TuileProcess;
let api: Api;
/** The data folder of the server the running tests use. */
let dataDir: string;

/** A push whose body the test sends by hand: `send` more, `end`, then the answer. */
function openPush(path: string): { req: ClientRequest; answer: Promise<{ status: number; body: any }> } {
  const req = request(`${t.base}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/octet-stream', 'Content-Length': String(NORTH.length) },
  });
  const answer = new Promise<{ status: number; body: any }>((resolve, reject) => {
    req.on('response', (res: IncomingMessage) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
  });
  return { req, answer };
}

/** Waits until the upload's folder holds a push's temporary file: the server is receiving it. */
async function receiving(upload: string): Promise<void> {
  const dir = join(dataDir, 'uploads', upload, 'data');
  const deadline = Date.now() + 10_000;
  while (!(existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.part')))) {
    if (Date.now() > deadline) throw new Error('the push never started');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function newUpload(name: string): Promise<string> {
  return (await api.call('POST', `${api.d}/uploads`, { name, type: 'RASTER', srs: 'EPSG:2154' })).body._id;
}

for (const workers of [1, 2]) {
  describe(`a push in flight (${workers} serving process(es): with two, /api passes through a proxy)`, () => {
    const server = withTuile('tuile-pushes-', { TUILE_WORKERS: String(workers) }, (s, a) => {
      t = s;
      api = a;
      dataDir = server.dataDir;
    });

    it('close and delete are refused (409) while it runs; it completes, then the close checks its file', async () => {
      const id = await newUpload('in flight');
      const push = openPush(`${api.d}/uploads/${id}/data?path=north.tif`);
      push.req.write(NORTH.subarray(0, 1000));
      await receiving(id);
      const close = await api.call('POST', `${api.d}/uploads/${id}/close`);
      expect(close.status).toBe(409);
      expect(close.body.error_description[0]).toMatch(/1 push\(es\) in flight: close it once they are answered/);
      const del = await api.call('DELETE', `${api.d}/uploads/${id}`);
      expect(del.status).toBe(409);
      expect(del.body.error_description[0]).toMatch(/push\(es\) in flight: delete it/);
      expect((await api.call('GET', `${api.d}/uploads/${id}`)).body.status).toBe('OPEN');
      push.req.end(NORTH.subarray(1000));
      const done = await push.answer;
      expect(done).toEqual({ status: 200, body: { path: 'north.tif', size: NORTH.length } });
      expect((await api.call('POST', `${api.d}/uploads/${id}/close`)).status).toBe(200);
      const u = (await api.until(`${api.d}/uploads/${id}`, ['CLOSED', 'UNSTABLE'])).entity;
      expect(u.status).toBe('CLOSED');
      expect(u.size).toBe(NORTH.length);
      const checks = (await api.call('GET', `${api.d}/uploads/${id}/checks`)).body;
      const logs = (await api.call('GET', `${api.d}/checks/executions/${checks.passed[0]._id}/logs`)).body;
      expect(logs).toEqual([expect.stringMatching(/^INFO north\.tif: 590x270 px/)]);
    });

    it('a push into a closed upload is 409 and leaves no file', async () => {
      const id = await newUpload('closed');
      expect((await api.call('POST', `${api.d}/uploads/${id}/data?path=a.tif`, new Uint8Array(NORTH), { 'Content-Type': 'application/octet-stream' })).status).toBe(200);
      expect((await api.call('POST', `${api.d}/uploads/${id}/close`)).status).toBe(200);
      const late = await api.call('POST', `${api.d}/uploads/${id}/data?path=b.tif`, new Uint8Array(NORTH), { 'Content-Type': 'application/octet-stream' });
      expect(late.status).toBe(409);
      expect(late.body.error_description[0]).toMatch(/files can be pushed only while it is OPEN/);
      await api.until(`${api.d}/uploads/${id}`, ['CLOSED', 'UNSTABLE']);
      expect(readdirSync(join(dataDir, 'uploads', id, 'data'))).toEqual(['a.tif']);
    });

    it('pushes racing a close: each push is either in the checked upload or refused with 409, never in it unchecked', async () => {
      for (let round = 0; round < 5; round++) {
        const id = await newUpload(`race ${round}`);
        expect((await api.call('POST', `${api.d}/uploads/${id}/data?path=first.tif`, new Uint8Array(NORTH), { 'Content-Type': 'application/octet-stream' })).status).toBe(200);
        const pushes = Array.from({ length: 6 }, (_, i) =>
          api.call('POST', `${api.d}/uploads/${id}/data?path=p${i}.tif`, new Uint8Array(PADDED), { 'Content-Type': 'application/octet-stream' }),
        );
        await new Promise((r) => setTimeout(r, 5 * round));
        const close = api.call('POST', `${api.d}/uploads/${id}/close`);
        const answers = await Promise.all([...pushes, close]);
        for (const a of answers) expect([200, 409]).toContain(a.status);
        const closeAnswer = answers[answers.length - 1];
        if (closeAnswer.status === 409) {
          // refused because of a push in flight: every push then ends, and a second close takes them all
          expect(closeAnswer.body.error_description[0]).toMatch(/in flight/);
          expect((await api.call('POST', `${api.d}/uploads/${id}/close`)).status).toBe(200);
        }
        const u = (await api.until(`${api.d}/uploads/${id}`, ['CLOSED', 'UNSTABLE'])).entity;
        const accepted = answers.slice(0, -1).flatMap((a, i) => (a.status === 200 ? [`p${i}.tif`] : []));
        const files = readdirSync(join(dataDir, 'uploads', id, 'data')).sort();
        expect(files).toEqual(['first.tif', ...accepted].sort());
        // every file there was checked: one INFO line each
        const run = (await api.call('GET', `${api.d}/uploads/${id}/checks`)).body;
        const logs: string[] = (await api.call('GET', `${api.d}/checks/executions/${[...run.passed, ...run.failed][0]._id}/logs`)).body;
        expect(logs.map((l) => l.split(':')[0]).sort()).toEqual(files.map((f) => `INFO ${f}`).sort());
        expect(u.status).toBe('CLOSED');
      }
    });

    it('a push its client cuts: no longer in flight (close accepted), nothing left of it', async () => {
      const id = await newUpload('cut');
      const push = openPush(`${api.d}/uploads/${id}/data?path=north.tif`);
      push.answer.catch(() => {});
      push.req.write(NORTH.subarray(0, 1000));
      await receiving(id);
      push.req.destroy();
      const dir = join(dataDir, 'uploads', id, 'data');
      const deadline = Date.now() + 10_000;
      let close = await api.call('POST', `${api.d}/uploads/${id}/close`);
      while (close.status === 409 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        close = await api.call('POST', `${api.d}/uploads/${id}/close`);
      }
      expect(close.status).toBe(200);
      expect(readdirSync(dir)).toEqual([]);
      expect((await api.until(`${api.d}/uploads/${id}`, ['CLOSED', 'UNSTABLE'])).entity.status).toBe('UNSTABLE');
    });

    it('delete while a push runs is 409; once the push is answered, the delete removes everything (404 after)', async () => {
      const id = await newUpload('deleted');
      const push = openPush(`${api.d}/uploads/${id}/data?path=north.tif`);
      push.req.write(NORTH.subarray(0, 1000));
      await receiving(id);
      expect((await api.call('DELETE', `${api.d}/uploads/${id}`)).status).toBe(409);
      push.req.end(NORTH.subarray(1000));
      expect((await push.answer).status).toBe(200);
      expect((await api.call('DELETE', `${api.d}/uploads/${id}`)).status).toBe(204);
      expect(existsSync(join(dataDir, 'uploads', id))).toBe(false);
      expect((await api.call('GET', `${api.d}/uploads/${id}`)).status).toBe(404);
      const late = await api.call('POST', `${api.d}/uploads/${id}/data?path=x.tif`, new Uint8Array(NORTH), { 'Content-Type': 'application/octet-stream' });
      expect(late.status).toBe(404);
      expect(existsSync(join(dataDir, 'uploads', id))).toBe(false);
    });
  });
}
