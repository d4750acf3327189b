// TIFF layouts through `tuile build`: BigTIFF, COGs (their full resolution, not an overview) and tiled JPEG in
// YCbCr build the same pyramid as the uncompressed file of the same pixels (JPEG within its loss).
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, runCli, tempDir } from './helpers/fixtures.js';
import { sameTiles } from './helpers/pyramids.js';

const tmp = tempDir('tuile-layouts-');
afterAll(() => tmp.cleanup());

function build(file: string): string {
  const out = join(tmp.path, file.replace(/\.tif$/, ''));
  const r = runCli(['build', fixture(`layouts/${file}`), '--out', out, '--compression', 'png', '--interpolation', 'nn', '--workers', '1', '--quiet']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return out;
}

describe('layouts through tuile build', () => {
  const none = build('none.tif');
  for (const [file, lossless] of [
    ['bigtiff.tif', true],
    ['cog_deflate.tif', true],
    ['cog_jpeg.tif', false],
    ['jpeg_ycbcr.tif', false],
  ] as const) {
    it(`${file} builds the pyramid of the uncompressed file`, async () => {
      const r = await sameTiles(build(file), none);
      expect(r.tiles).toBeGreaterThan(3);
      if (lossless) expect(r.worstIdentical).toBe(1);
      // quality 95: an overview in place of the full resolution would fall far below
      else expect(r.worstPsnr).toBeGreaterThan(38);
    });
  }
});
