// GeoTIFF reading: every TIFF layout and compression reads to the same pixels, windows anywhere agree
// with the whole image, and the georeferencing is read as GDAL reads it.
import { describe, expect, it } from 'vitest';
import { GeoTiffSource } from '../src/raster/geotiff.js';
import { inflateIntoSupported } from '../src/raster/inflate.js';
import { fixture } from './helpers/fixtures.js';

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255 * a.length) / se);
}

describe('GeoTIFF layouts', async () => {
  const ref = await GeoTiffSource.open(fixture('layouts/none.tif'));
  const whole = await ref.readWindow(0, 0, 96, 96);
  for (const [file, lossless] of [
    ['lzw_tiled.tif', true],
    ['packbits.tif', true],
    ['deflate_planar.tif', true],
    ['jpeg_rgb.tif', false],
    ['jpeg_ycbcr.tif', false],
    ['bigtiff.tif', true],
    ['cog_deflate.tif', true],
    ['cog_jpeg.tif', false],
  ] as const) {
    it(`${file} reads like the uncompressed file`, async () => {
      const s = await GeoTiffSource.open(fixture(`layouts/${file}`));
      expect(s.info.bands).toBe(3);
      expect(s.info.geoTransform).toEqual(ref.info.geoTransform);
      const w = await s.readWindow(0, 0, 96, 96);
      if (lossless) expect(Buffer.from(w.data).equals(Buffer.from(whole.data))).toBe(true);
      else expect(psnr(w.data, whole.data)).toBeGreaterThan(38);
      await s.close();
    });
  }

  it('a window across block edges equals the same part of the whole image', async () => {
    const s = await GeoTiffSource.open(fixture('layouts/lzw_tiled.tif'));
    const w = await s.readWindow(17, 29, 81, 70);
    for (let y = 0; y < w.height; y++) {
      const row = w.data.subarray(y * w.width * 3, (y + 1) * w.width * 3);
      const want = whole.data.subarray(((29 + y) * 96 + 17) * 3, ((29 + y) * 96 + 81) * 3);
      expect(Buffer.from(row).equals(Buffer.from(want))).toBe(true);
    }
  });
});

describe('georeferencing', () => {
  it('reads the geotransform of a tiepoint + pixel scale file (PixelIsArea)', async () => {
    const s = await GeoTiffSource.open(fixture('france_relief_north_2154.tif'));
    expect(s.info.geoTransform).toEqual([80000, 2000, 0, 7120000, 0, -2000]);
    expect(s.info.crs.epsg).toBe(2154);
    expect(s.info.alphaSample).toBe(1);
    expect(s.info.bands).toBe(1);
  });

  it('merges nodata into validity', async () => {
    // Puerto Rico is paletted without nodata: all valid; north has alpha: some pixels invalid
    const pal = await GeoTiffSource.open(fixture('lc_puertorico_albers_palette.tif'));
    const pw = await pal.readWindow(0, 0, 84, 46);
    expect(pw.bands).toBe(3);
    expect(pw.alpha).toBeNull();
    const north = await GeoTiffSource.open(fixture('france_relief_north_2154.tif'));
    const nw = await north.readWindow(0, 0, 590, 270);
    const invalid = nw.alpha!.filter((a) => a === 0).length;
    expect(invalid).toBeGreaterThan(0.3 * 590 * 270);
    expect(invalid).toBeLessThan(0.7 * 590 * 270);
  });

  it('refuses samples that are not 8-bit with a clear message', async () => {
    await expect(GeoTiffSource.open(fixture('elev_luxembourg_4326.tif'))).rejects.toThrow(/16-bit signed.*only 8-bit/);
  });
});

describe('deflate blocks', () => {
  it('inflate into reused buffers on this Node (else every block is a fresh buffer, page faults and collections)', () => {
    expect(inflateIntoSupported).toBe(true);
  });
});
