// Request bodies against `node dist/main.js`: JSON bodies over the limit refused (413) before they are read
// whole, with one serving process and with two (where /api requests pass through a proxy to the primary),
// bounded lists of tags.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.js';
import { Api, TOKEN, startTuile, type TuileProcess } from '../helpers/tuile.js';

const MiB = 2 ** 20;

let t: TuileProcess;
let api: Api;

/**
 * Sends a body of `total` bytes (declared, or chunked when `declare` is false) as fast as the server takes it,
 * and stops at the answer: resolves with its status, its JSON and how many bytes had been sent then.
 */
function flood(path: string, total: number, declare: boolean): Promise<{ status: number; body: any; sent: number }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
    if (declare) headers['Content-Length'] = String(total);
    const req = request(`${t.base}${path}`, { method: 'POST', headers });
    let sent = 0;
    let answered = false;
    const chunk = Buffer.alloc(MiB, 0x20);
    const pump = () => {
      while (!answered && sent < total) {
        const n = Math.min(chunk.length, total - sent);
        sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      if (!answered) req.end();
    };
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        resolve({ status: res.statusCode!, body: JSON.parse(text), sent });
        req.destroy();
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    pump();
  });
}

for (const workers of [1, 2]) {
  describe(`JSON bodies (${workers} serving process(es))`, () => {
    const data = tempDir('tuile-bodies-');
    beforeAll(async () => {
      t = await startTuile(data.path, { TUILE_WORKERS: String(workers) });
      api = new Api(t.base);
      await api.init();
    });
    afterAll(async () => {
      await t?.stop();
      data.cleanup();
    });

    it('600 MB declared: 413 at once, having read almost nothing; the server serves on', async () => {
      const r = await flood(`${api.d}/uploads`, 600_000_000, true);
      expect(r.status).toBe(413);
      expect(r.body).toEqual({ error: 'payload_too_large', error_description: [`a JSON body may not exceed ${MiB} bytes`] });
      expect(r.sent).toBeLessThan(100 * MiB);
      expect((await fetch(`${t.base}/health`)).status).toBe(200);
      expect((await api.call('GET', `${api.d}/uploads`)).status).toBe(200);
    });

    it('chunked, without a length: 413 once the limit is passed, long before the end', async () => {
      const r = await flood(`${api.d}/uploads`, 600_000_000, false);
      expect(r.status).toBe(413);
      expect(r.sent).toBeLessThan(100 * MiB);
      expect((await fetch(`${t.base}/health`)).status).toBe(200);
    });

    it('the limit is 1 MiB by default, exactly', async () => {
      const json = JSON.stringify({ name: 'padded', type: 'RASTER', srs: 'EPSG:4326' });
      const at = await api.call('POST', `${api.d}/uploads`, json + ' '.repeat(MiB - json.length), { 'Content-Type': 'application/json' });
      expect(at.status).toBe(201);
      const over = await api.call('POST', `${api.d}/uploads`, json + ' '.repeat(MiB - json.length + 1), { 'Content-Type': 'application/json' });
      expect(over.status).toBe(413);
    });
  });
}

describe('tags', () => {
  const data = tempDir('tuile-tags-');
  beforeAll(async () => {
    t = await startTuile(data.path);
    api = new Api(t.base);
    await api.init();
  });
  afterAll(async () => {
    await t?.stop();
    data.cleanup();
  });
  const tags = (n: number, prefix = 't') => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, 'v']));

  it('at most 100 on an entity: 400 beyond, at creation and through PATCHes that add up', async () => {
    const many = await api.call('POST', `${api.d}/uploads`, { name: 'x', type: 'RASTER', srs: 'EPSG:4326', tags: tags(101) });
    expect(many.status).toBe(400);
    expect(many.body.error_description.join()).toMatch(/tags: at most 100 tags/);
    const u = await api.call('POST', `${api.d}/uploads`, { name: 'x', type: 'RASTER', srs: 'EPSG:4326', tags: tags(100) });
    expect(u.status).toBe(201);
    const replaced = await api.call('PATCH', `${api.d}/uploads/${u.body._id}`, { tags: { t0: 'changed' } });
    expect(replaced.status).toBe(200);
    const added = await api.call('PATCH', `${api.d}/uploads/${u.body._id}`, { tags: tags(1, 'extra') });
    expect(added.status).toBe(400);
    expect(added.body.error_description[0]).toMatch(/at most 100 tags \(this would make 101\)/);
    const now = (await api.call('GET', `${api.d}/uploads/${u.body._id}`)).body;
    expect(Object.keys(now.tags)).toHaveLength(100);
    expect(now.tags.t0).toBe('changed');
  });
});
