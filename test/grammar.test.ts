import { describe, expect, it } from 'vitest';
import { PM } from '../src/geo/tms.js';
import { matchTilePath, OGCAPI, TILE_FORMS, tileOf, TMS, WMTS_REST, XYZ } from '../src/protocols/grammar.js';

/** The URL of tile {z, x, y} (y from the top) in each form, written from the specs, not from the grammar. */
const urls = (z: number, x: number, y: number) => [
  { form: XYZ, url: `/tiles/lyr/${z}/${x}/${y}.png` },
  { form: TMS, url: `/tms/1.0.0/lyr/${z}/${x}/${2 ** z - 1 - y}.png` },
  { form: WMTS_REST, url: `/wmts/1.0.0/lyr/normal/PM/${z}/${y}/${x}.png` },
  { form: OGCAPI, url: `/ogcapi/collections/lyr/map/tiles/WebMercatorQuad/${z}/${y}/${x}` },
];

describe('the tile grammar', () => {
  it('reads every tile of levels 0-5 back from the URL of each form as the same {z, x, y}', () => {
    for (let z = 0; z <= 5; z++)
      for (let x = 0; x < 2 ** z; x++)
        for (let y = 0; y < 2 ** z; y++)
          for (const { form, url } of urls(z, x, y)) {
            const m = matchTilePath(url);
            expect(m?.form).toBe(form);
            expect(m!.url.layer).toBe('lyr');
            expect(tileOf(m!.form, m!.url, PM)).toEqual({ z, x, y });
          }
  });

  it('gives each form the route pattern Hono reports for it', () => {
    expect(TILE_FORMS.map((f) => matchTilePath(urls(1, 0, 0)[TILE_FORMS.indexOf(f)].url)!.pattern)).toEqual([
      '/tiles/:layer/:z/:x/:file',
      '/tms/1.0.0/:layer/:z/:x/:file',
      '/wmts/1.0.0/:layer/:style/:tms/:z/:row/:file',
      '/ogcapi/collections/:layer/map/tiles/:tms/:tileMatrix/:tileRow/:tileCol',
    ]);
  });

  it('names no tile for other paths, non-canonical indices, or TMS rows outside the grid', () => {
    for (const p of ['/tiles/lyr/1/0', '/tiles/lyr/1/0/0', '/tms/1.0.0/lyr', '/wmts/1.0.0/WMTSCapabilities.xml', '/ogcapi/collections/lyr/map/tiles', '/tiles//1/0/0.png', '/other/lyr/1/0/0.png']) {
      expect(matchTilePath(p)).toBeNull();
    }
    for (const p of ['/tiles/lyr/01/0/0.png', '/tiles/lyr/1/-1/0.png', '/tiles/lyr/1/0/1e0.png', '/tms/1.0.0/lyr/1/0/2.png', '/tms/1.0.0/lyr/30/0/0.png', '/wmts/1.0.0/lyr/normal/PM/x/0/0.png']) {
      const m = matchTilePath(p)!;
      expect(m).not.toBeNull();
      expect(tileOf(m.form, m.url, PM)).toBeNull();
    }
  });
});
