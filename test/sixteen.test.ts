// 16-bit deliveries: `tuile build --scale` (and without it, each band's minimum and maximum) maps samples to bytes as
// `gdal_translate -ot Byte -scale` does. Checked by building the 16-bit RGBI file and GDAL's 8-bit conversions of it
// (test/fixtures/sixteen, made by its make.sh) with the same options: every tile must hold the same pixels.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectRefused, fixture, runCli, tempDir } from './helpers/fixtures.js';
import { sameTiles } from './helpers/pyramids.js';
import { Api, startTuile } from './helpers/tuile.js';

const tmp = tempDir('tuile-sixteen-');
afterAll(() => tmp.cleanup());

function build(name: string, input: string, extra: string[]): string {
  const out = join(tmp.path, name);
  const r = runCli(['build', fixture(input), '--out', out, '--compression', 'png', '--interpolation', 'nn', '--workers', '1', '--quiet', ...extra]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return out;
}

describe('16-bit RGBI input', () => {
  it('--scale MIN,MAX maps every band as gdal_translate -ot Byte -scale MIN MAX 0 255', async () => {
    const ours = build('scaled', 'sixteen/rgbi_uint16.tif', ['--bands', '1,2,3', '--scale', '1000,3000']);
    const gdal = build('scaled-ref', 'sixteen/ref_1000_3000.tif', []);
    const r = await sameTiles(ours, gdal);
    expect(r.tiles).toBeGreaterThan(3);
    expect(r.worstIdentical).toBe(1);
  });

  it('one range per band, with the infrared band chosen by --bands (gdal_translate -b 4 -b 1 -b 2 -scale_N)', async () => {
    const ours = build('bands', 'sixteen/rgbi_uint16.tif', ['--bands', '4,1,2', '--scale', '1500,4400,300,4300,700,2700']);
    const gdal = build('bands-ref', 'sixteen/ref_bands_412.tif', []);
    const r = await sameTiles(ours, gdal);
    expect(r.tiles).toBeGreaterThan(3);
    // a rounding at exactly .5 may fall on the other side of GDAL's float arithmetic
    expect(r.worstIdentical).toBeGreaterThan(0.999);
  });

  it('without --scale: each band from its minimum to its maximum, as gdal_translate -scale', async () => {
    const ours = build('auto', 'sixteen/rgbi_uint16.tif', ['--bands', '1,2,3']);
    const gdal = build('auto-ref', 'sixteen/ref_auto.tif', []);
    const r = await sameTiles(ours, gdal);
    expect(r.tiles).toBeGreaterThan(3);
    expect(r.worstIdentical).toBeGreaterThan(0.999);
  });

  it('refuses a scale that cannot be applied, in one line', () => {
    for (const [scale, message] of [
      ['1000', /--scale takes MIN,MAX/],
      ['5,5', /two different numbers/],
      ['0,10,0,20', /2 MIN,MAX pairs for 3 band/],
    ] as const) {
      const out = join(tmp.path, `bad-${scale}`);
      expectRefused(runCli(['build', fixture('sixteen/rgbi_uint16.tif'), '--out', out, '--bands', '1,2,3', '--scale', scale]), out, message);
    }
  });

  it('the API takes bands and scale as execution parameters', async () => {
    const data = join(tmp.path, 'data');
    const t = await startTuile(data);
    try {
      const api = new Api(t.base);
      await api.init();
      const u = await api.deliver([{ path: 'data/rgbi.tif', file: fixture('sixteen/rgbi_uint16.tif') }], 'EPSG:4326', 'rgbi');
      expect(u.status).toBe('CLOSED');
      const bad = await api.call('POST', `${api.d}/processings/executions`, {
        processing: await api.processing(),
        inputs: { upload: [u._id] },
        output: { stored_data: { name: 'bad' } },
        parameters: { scale: [[7, 7]] },
      });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body.error_description)).toMatch(/MIN and MAX must differ/);
      const e = await api.execute({ upload: [u._id] }, { compression: 'png', interpolation: 'nn', bands: [1, 2, 3], scale: [[1000, 3000]] }, 'rgb');
      const done = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE'])).entity;
      expect(done.status).toBe('SUCCESS');
      const r = await sameTiles(join(data, 'pyramids', e.output.stored_data._id), build('api-ref', 'sixteen/ref_1000_3000.tif', []));
      expect(r.tiles).toBeGreaterThan(3);
      expect(r.worstIdentical).toBe(1);
    } finally {
      await t.stop();
    }
  });
});
