// Request bodies against `node dist/main.js`: JSON bodies over the limit refused (413) before they are read
// whole, with one serving process and with two (where /api requests pass through a proxy to the primary),
// bounded lists of tags, time limits on bodies (pushes sized to the largest file).
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pushTimeout } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { fixture } from '../helpers/fixtures.js';
import { TOKEN, withTuile, type Api, type TuileProcess } from '../helpers/tuile.js';

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
    withTuile('tuile-bodies-', { TUILE_WORKERS: String(workers) }, (s, a) => {
      t = s;
      api = a;
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
  withTuile('tuile-tags-', {}, (s, a) => {
    t = s;
    api = a;
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

  it('the OpenAPI description lists 408 and 413 for every route with a body', async () => {
    const doc = await (await fetch(`${t.base}/api/openapi.json`)).json();
    const withBody = Object.values(doc.paths as Record<string, Record<string, any>>).flatMap((ops) => Object.values(ops).filter((op) => op.requestBody));
    expect(withBody.length).toBeGreaterThan(10);
    for (const op of withBody) expect(Object.keys(op.responses), op.summary).toEqual(expect.arrayContaining(['408', '413']));
  });
});

describe('the time of a push', () => {
  it('is the largest file at the slowest rate: 4 GiB at 1 MiB/s by default, 68 min (Node cut at 5 min)', () => {
    expect(pushTimeout(loadConfig({}))).toBe(4096);
    expect(pushTimeout(loadConfig({ TUILE_UPLOAD_MAX_BYTES: '1000', TUILE_BODY_TIMEOUT: '30' }))).toBe(30);
  });
});

for (const workers of [1, 2]) {
  describe(`time limits on bodies (${workers} serving process(es))`, () => {
    // bodies: 1 s; pushes: 3 MB at 1 MB/s at least, 3 s (by default 4 GiB at 1 MiB/s: 68 min, not Node's 5 min)
    const data = withTuile('tuile-slow-', { TUILE_WORKERS: String(workers), TUILE_BODY_TIMEOUT: '1', TUILE_UPLOAD_MAX_BYTES: '3000000', TUILE_UPLOAD_MIN_RATE: '1000000' }, (s, a) => {
      t = s;
      api = a;
    });

    /** Sends `body` in `parts` pieces spread over `ms`; resolves with the answer and when it came. */
    function trickle(method: string, path: string, body: Buffer, parts: number, ms: number, type = 'application/octet-stream') {
      return new Promise<{ status: number; body: any; after: number }>((resolve, reject) => {
        const started = Date.now();
        const req = request(`${t.base}${path}`, {
          method,
          headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': type, 'Content-Length': String(body.length) },
        });
        let answered = false;
        req.on('response', (res) => {
          answered = true;
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : null, after: Date.now() - started }));
        });
        req.on('error', (err) => {
          if (!answered) reject(err);
        });
        const size = Math.ceil(body.length / parts);
        let i = 0;
        const next = () => {
          if (answered || req.destroyed) return;
          const piece = body.subarray(i * size, (i + 1) * size);
          i++;
          if (i >= parts) req.end(piece);
          else {
            req.write(piece);
            setTimeout(next, ms / parts);
          }
        };
        next();
      });
    }

    it('a JSON body slower than TUILE_BODY_TIMEOUT: 408 when it runs out; the server serves on', async () => {
      const json = Buffer.from(JSON.stringify({ name: 'slow', type: 'RASTER', srs: 'EPSG:4326' }));
      const r = await trickle('POST', `${api.d}/uploads`, json, 4, 3000, 'application/json');
      expect(r.status).toBe(408);
      expect(r.body.error_description[0]).toBe('the request body did not arrive within 1 s');
      expect(r.after).toBeGreaterThanOrEqual(900);
      expect(r.after).toBeLessThan(2500);
      expect((await api.call('GET', `${api.d}/uploads`)).body).toEqual([]);
    });

    it('a push has the time of the largest file at the slowest rate: 2 s passes, 5 s is cut at 3 s, nothing left', async () => {
      const u = (await api.call('POST', `${api.d}/uploads`, { name: 'slow', type: 'RASTER', srs: 'EPSG:2154' })).body;
      const file = readFileSync(fixture('france_relief_north_2154.tif'));
      const ok = await trickle('POST', `${api.d}/uploads/${u._id}/data?path=north.tif`, file, 10, 2000);
      expect(ok.status).toBe(200);
      expect(ok.after).toBeGreaterThan(1500);
      const cut = await trickle('POST', `${api.d}/uploads/${u._id}/data?path=late.tif`, file, 10, 5000);
      expect(cut.status).toBe(408);
      expect(cut.body.error_description[0]).toBe('the request body did not arrive within 3 s');
      expect(cut.after).toBeGreaterThanOrEqual(2900);
      expect(cut.after).toBeLessThan(4500);
      const dir = join(data.dataDir, 'uploads', u._id, 'data');
      for (let i = 0; i < 100 && readdirSync(dir).length > 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(readdirSync(dir)).toEqual(['north.tif']);
      expect((await api.call('POST', `${api.d}/uploads/${u._id}/close`)).status).toBe(200);
      expect((await api.until(`${api.d}/uploads/${u._id}`, ['CLOSED', 'UNSTABLE'])).entity.status).toBe('CLOSED');
      expect(t.output()).not.toMatch(/ERR_HTTP_HEADERS_SENT|internal_error/);
    });
  });
}
