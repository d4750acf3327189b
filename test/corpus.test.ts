// Georeferencing parity with GDAL on a corpus of GeoTIFFs (test/fixtures/corpus, made by its make.py with
// gdal_translate and geotifcp): each file `tuile build` places lands where GDAL puts it (extent within 1/8
// source pixel, bottom level, bottom tiles >= 35 dB from gdalwarp bilinear), or is refused in one line that
// names the key or tag and why. A file GDAL cannot place must be refused. Misplaced must stay 0.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PMTilesReader } from '../src/pyramid/pmtiles/reader.js';
import { decodeTile } from '../src/tiles/codec.js';
import type { RawTile } from '../src/raster/tile.js';
import { FIXTURES, runCli, tempDir } from './helpers/fixtures.js';
import { compare, readImage } from './helpers/images.js';

interface Expected {
  bbox3857: [number, number, number, number];
  pixel3857: number;
  res3857: number;
  bottom: number;
  ref: { png: string; z: number; x0: number; y0: number; nx: number; ny: number };
}
interface Entry {
  file: string;
  what: string;
  gdal: Expected | { error: string } | null;
}

const DIR = join(FIXTURES, 'corpus');
const manifest: { gdal: string; files: Entry[] } = JSON.parse(readFileSync(join(DIR, 'manifest.json'), 'utf8'));

/**
 * The files tuile refuses, with what the one line must say: GDAL places none of them the same way twice
 * (its own versions disagree), or not at all.
 */
const REFUSED: Record<string, RegExp> = {
  'gcs4326_arcsec.tif': /longitudes 8280.* outside -180..180/,
  'gcs_user_grad.tif': /GeogAngularUnitsGeoKey = 9105 \(grad\)/,
  'gcs_user_arcsec.tif': /GeogAngularUnitsGeoKey = 9104 \(arc-second\)/,
  'user_tm_grad_km.tif': /GeogAngularUnitsGeoKey.*grad/,
  'user_tm_grad_usergcs.tif': /GeogAngularUnitsGeoKey.*grad/,
  'user_lcc_dms_usft.tif': /GeogAngularUnitsGeoKey.*9110/,
  'user_lcc_dms_usergcs.tif': /GeogAngularUnitsGeoKey.*9110/,
  'user_lcc_rad_ft.tif': /GeogAngularUnitsGeoKey.*radian/,
  'user_aea_arcsec_user.tif': /GeogAngularUnitsGeoKey.*arc-second/,
  'gcp8_2154.tif': /ModelTiepointTag.*8 tiepoints/,
  'esri_pe_only.tif': /ProjCoordTransGeoKey/,
  'esri_pe_gtcitation.tif': /ProjCoordTransGeoKey/,
  'citation_only_utm.tif': /ProjCoordTransGeoKey/,
  'citation_imagine_utm.tif': /ProjCoordTransGeoKey/,
  'antimeridian_4326.tif': /antimeridian/,
  'epsg32761.tif': /does not project to Web Mercator/,
};

const tmp = tempDir('tuile-corpus-');
afterAll(() => tmp.cleanup());
const tally = { placed: [] as string[], refused: [] as string[], misplaced: [] as string[] };

async function block(dir: string, ref: Expected['ref'], bands: number): Promise<RawTile> {
  const w = ref.nx * 256;
  const h = ref.ny * 256;
  const out: RawTile = { width: w, height: h, bands, data: new Uint8Array(w * h * bands), alpha: new Uint8Array(w * h) };
  const reader = await PMTilesReader.open(join(dir, 'tiles.pmtiles'));
  try {
    for (let j = 0; j < ref.ny; j++) {
      for (let i = 0; i < ref.nx; i++) {
        const data = await reader.getTile({ z: ref.z, x: ref.x0 + i, y: ref.y0 + j });
        if (!data) continue; // blank tiles are not stored
        const t = await decodeTile(data);
        for (let y = 0; y < 256; y++) {
          for (let x = 0; x < 256; x++) {
            const d = (j * 256 + y) * w + i * 256 + x;
            const s = y * 256 + x;
            for (let b = 0; b < bands; b++) out.data[d * bands + b] = t.data[s * t.bands + Math.min(b, t.bands - 1)];
            out.alpha[d] = t.alpha[s];
          }
        }
      }
    }
  } finally {
    await reader.close();
  }
  return out;
}

describe(`georeferencing corpus (${manifest.files.length} files, references from GDAL ${manifest.gdal})`, () => {
  for (const entry of manifest.files) {
    it(`${entry.file}: ${entry.what}`, async () => {
      const out = join(tmp.path, entry.file.replace(/\.tif$/, ''));
      const r = runCli(['build', join(DIR, entry.file), '--out', out, '--compression', 'png', '--interpolation', 'linear', '--workers', '1', '--quiet']);
      const gdal = entry.gdal && !('error' in entry.gdal) ? entry.gdal : null;
      if (r.status !== 0) {
        tally.refused.push(entry.file);
        expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
        expect(REFUSED[entry.file], `refused, not listed: ${r.stderr}`).toBeDefined();
        expect(r.stderr).toMatch(/^tuile: /);
        expect(r.stderr).toMatch(REFUSED[entry.file] ?? /^(?!)/);
        return;
      }
      if (!gdal) tally.misplaced.push(entry.file);
      expect(gdal, `tuile placed ${entry.file}, which GDAL does not place (${JSON.stringify(entry.gdal)})`).not.toBeNull();
      expect(REFUSED[entry.file], 'listed as refused').toBeUndefined();
      const ins = runCli(['inspect', out, '--json']);
      expect(ins.status, ins.stderr).toBe(0);
      const d = JSON.parse(ins.stdout);
      const got = [d.bbox.minX, d.bbox.minY, d.bbox.maxX, d.bbox.maxY];
      const off = Math.max(...got.map((v: number, i: number) => Math.abs(v - gdal!.bbox3857[i])));
      const ref = await readImage(join(DIR, 'refs', gdal!.ref.png));
      const ok = off <= gdal!.pixel3857 / 8 && d.bottom === gdal!.bottom;
      if (!ok) tally.misplaced.push(entry.file);
      expect(off / gdal!.pixel3857, `extent off by ${off.toFixed(3)} m (${got.join(', ')})`).toBeLessThanOrEqual(1 / 8);
      expect(d.bottom).toBe(gdal!.bottom);
      const c = compare(await block(out, gdal!.ref, ref.bands), ref);
      if (c.psnr < 35) tally.misplaced.push(entry.file);
      expect(c.compared).toBeGreaterThan(0);
      expect(c.psnr, `${entry.file}: ${c.psnr.toFixed(2)} dB`).toBeGreaterThanOrEqual(35);
      // edge pixels may differ in coverage; a shifted raster would flip whole rows or columns
      expect(c.maskMismatch * ref.width * ref.height).toBeLessThan(0.1 * c.compared);
      tally.placed.push(entry.file);
    });
  }

  it('places or refuses every file, misplaces none', () => {
    console.log(
      `corpus: ${manifest.files.length} files, placed ${tally.placed.length}, refused ${tally.refused.length}, misplaced ${tally.misplaced.length}${tally.misplaced.length ? ` (${tally.misplaced.join(', ')})` : ''}`,
    );
    expect(tally.misplaced).toEqual([]);
    expect(tally.placed.length + tally.refused.length).toBe(manifest.files.length);
    expect(tally.refused.sort()).toEqual(Object.keys(REFUSED).sort());
  });
});

describe('longitudes past ±180', () => {
  it('cuts less than a pixel beyond: a global grid registered on pixel centres builds', () => {
    // 5° pixels from -182.5 to 177.5 (the antimeridian file of the corpus, 32 pixels across, is refused)
    const out = join(tmp.path, 'global');
    const r = runCli(['build', join(FIXTURES, 'global_centres_4326.tif'), '--out', out, '--workers', '1', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const d = JSON.parse(runCli(['inspect', out, '--json']).stdout);
    expect(d.bboxLonLat.minX).toBeCloseTo(-180, 9);
    expect(d.bboxLonLat.maxX).toBeCloseTo(177.5, 9);
  });
});
