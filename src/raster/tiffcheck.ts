// TIFF structure, checked before anything trusts it: the IFD chain (loops, count, entries inside the file)
// and the strips or tiles of the image we read (inside the file, enough bytes for the pixels declared).
// geotiff.js follows the chain and the offsets as written, so a crafted header makes it loop or read past
// the end; a file refused here never reaches it (issue 15, item 7).

import { open, type FileHandle } from 'node:fs/promises';
import type { GeoTIFFImage } from 'geotiff';
import { TuileError } from '../errors.js';

/** More images than any delivery has (one image, its overviews and masks: a few dozen). */
const MAX_IFDS = 1024;
/** Bytes of directories read over the whole chain: real ones take a few hundred bytes each. */
const MAX_DIRECTORY_BYTES = 16 * 2 ** 20;
/** Values of one tag: 2^24 strips or tiles is beyond any raster under the pixel limit. */
const MAX_TAG_VALUES = 2 ** 24;

/** Bytes of one value of each TIFF field type (TIFF 6.0 section 2, BigTIFF's 16-18). */
const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8 };

const TAG_NAMES: Record<number, string> = {
  256: 'ImageWidth',
  257: 'ImageLength',
  273: 'StripOffsets',
  278: 'RowsPerStrip',
  279: 'StripByteCounts',
  320: 'ColorMap',
  322: 'TileWidth',
  323: 'TileLength',
  324: 'TileOffsets',
  325: 'TileByteCounts',
  33550: 'ModelPixelScale',
  33922: 'ModelTiepoint',
  34264: 'ModelTransformation',
  34735: 'GeoKeyDirectory',
  34736: 'GeoDoubleParams',
  34737: 'GeoAsciiParams',
};

const tagName = (tag: number) => TAG_NAMES[tag] ?? `tag ${tag}`;

/**
 * Most decoded bytes one stored byte can give, per compression: deflate's ceiling is 1032:1, TIFF LZW's
 * (12-bit codes for strings of at most ~4000 bytes) about 1300:1, PackBits' 64:1 (128 bytes from 2), baseline
 * JPEG's a few hundred (two bits per 8x8 block at best). Rounded up: a real file is far below.
 */
const MAX_RATIO: Record<number, number> = { 5: 4096, 6: 1100, 7: 1100, 8: 1100, 32773: 130, 32946: 1100 };
/** Other codecs (zstd, LZMA, WebP...): a loose bound, against stubs only. */
const MAX_RATIO_OTHER = 100_000;
const CODEC_NAMES: Record<number, string> = { 5: 'LZW', 6: 'old JPEG', 7: 'JPEG', 8: 'deflate', 32773: 'PackBits', 32946: 'deflate' };

function invalid(path: string, what: string): TuileError {
  return new TuileError('InvalidInput', `${path}: ${what}`);
}

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, offset);
  return bytesRead === length ? buf : buf.subarray(0, bytesRead);
}

/**
 * Walks the header and the chain of image file directories of a file of `size` bytes: refuses a chain that
 * loops back or goes on past MAX_IFDS, a directory or a tag value that runs past the end of the file, and
 * tags with more than MAX_TAG_VALUES values. Reads at most MAX_DIRECTORY_BYTES, whatever the file claims.
 */
export async function checkTiffStructure(path: string, size: number): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const head = await readAt(fh, 0, 16);
    const order = head.subarray(0, 2).toString('latin1');
    if (head.length < 8 || (order !== 'II' && order !== 'MM')) throw invalid(path, 'not a readable TIFF (no TIFF byte-order mark)');
    const le = order === 'II';
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const u64 = (b: Buffer, o: number) => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
    const magic = u16(head, 2);
    if (magic !== 42 && magic !== 43) throw invalid(path, `not a readable TIFF (version ${magic}, not 42 or BigTIFF's 43)`);
    const big = magic === 43;
    if (big && head.length < 16) throw invalid(path, 'not a readable TIFF (BigTIFF header cut short)');
    const countSize = big ? 8 : 2;
    const entrySize = big ? 20 : 12;
    const pointerSize = big ? 8 : 4;
    const uint = (b: Buffer, o: number) => (big ? u64(b, o) : u32(b, o));
    const count = (b: Buffer, o: number) => (big ? u64(b, o) : u16(b, o));

    let offset = big ? u64(head, 8) : u32(head, 4);
    const seen = new Set<number>();
    let directoryBytes = 0;
    for (let index = 0; offset !== 0; index++) {
      if (seen.has(offset)) throw invalid(path, `its chain of image directories loops back (image ${index + 1} is at offset ${offset}, already read)`);
      if (index >= MAX_IFDS) throw invalid(path, `more than ${MAX_IFDS} image directories`);
      seen.add(offset);
      if (offset + countSize > size) throw invalid(path, `image directory ${index + 1} at offset ${offset} is past the end of the file (${size} bytes)`);
      const n = count(await readAt(fh, offset, countSize), 0);
      const bytes = n * entrySize + pointerSize;
      if (offset + countSize + bytes > size) {
        throw invalid(path, `image directory ${index + 1} (${n} entries at offset ${offset}) runs past the end of the file (${size} bytes)`);
      }
      directoryBytes += bytes;
      if (directoryBytes > MAX_DIRECTORY_BYTES) throw invalid(path, `its image directories take more than ${MAX_DIRECTORY_BYTES} bytes`);
      const dir = await readAt(fh, offset + countSize, bytes);
      for (let e = 0; e < n; e++) {
        const at = e * entrySize;
        const tag = u16(dir, at);
        const typeSize = TYPE_SIZE[u16(dir, at + 2)];
        if (typeSize === undefined) continue; // unknown types are skipped by readers (TIFF 6.0 section 2)
        const values = big ? u64(dir, at + 4) : u32(dir, at + 4);
        if (values > MAX_TAG_VALUES) throw invalid(path, `${tagName(tag)} has ${values} values, over the limit of ${MAX_TAG_VALUES}`);
        const length = values * typeSize;
        if (length <= pointerSize) continue; // the value is in the entry itself
        const at2 = uint(dir, at + 4 + pointerSize);
        if (at2 + length > size) {
          throw invalid(path, `${tagName(tag)} (${values} values at offset ${at2}) runs past the end of the file (${size} bytes)`);
        }
      }
      offset = uint(dir, n * entrySize);
    }
    if (seen.size === 0) throw invalid(path, 'not a readable TIFF (no image directory)');
  } finally {
    await fh.close();
  }
}

async function numbers(image: GeoTIFFImage, name: string): Promise<ArrayLike<number> | undefined> {
  const fd = image.fileDirectory as unknown as { hasTag(n: string): boolean; loadValue(n: string): Promise<unknown> };
  if (!fd.hasTag(name)) return undefined;
  const v = await fd.loadValue(name);
  if (typeof v === 'number') return [v];
  return v as ArrayLike<number>;
}

/**
 * The strips or tiles of an image (its structure already checked): as many as its size and RowsPerStrip or tile
 * size declare, each inside the file, uncompressed ones holding their pixels, and compressed ones not
 * claiming more pixels than their codec can give from their bytes (a 300-byte file "of" 65535x65535).
 */
export async function checkImageBlocks(image: GeoTIFFImage, path: string, fileSize: number): Promise<void> {
  const width = image.getWidth();
  const height = image.getHeight();
  const tiled = image.isTiled;
  const offsets = await numbers(image, tiled ? 'TileOffsets' : 'StripOffsets');
  const counts = await numbers(image, tiled ? 'TileByteCounts' : 'StripByteCounts');
  const kind = tiled ? 'tile' : 'strip';
  if (!offsets || !counts) throw invalid(path, `no ${tiled ? 'TileOffsets/TileByteCounts' : 'StripOffsets/StripByteCounts'}: the pixels cannot be found`);
  let blockW = width;
  let blockH: number;
  if (tiled) {
    blockW = image.getTileWidth();
    blockH = image.getTileHeight();
    if (!(blockW > 0 && blockH > 0)) throw invalid(path, `tiles of ${blockW}x${blockH} pixels`);
  } else {
    const rps = await numbers(image, 'RowsPerStrip');
    // absent, RowsPerStrip means one strip; 0 is no size at all (libtiff refuses it too)
    if (rps && !(rps[0] >= 1)) throw invalid(path, `RowsPerStrip is ${rps[0]}: strips without rows`);
    blockH = Math.min(rps ? rps[0] : height, height);
  }
  const across = Math.ceil(width / blockW);
  const down = Math.ceil(height / blockH);
  const spp = image.getSamplesPerPixel();
  const planar = image.planarConfiguration === 2;
  const planes = planar ? spp : 1;
  const expected = across * down * planes;
  if (offsets.length < expected || counts.length < expected) {
    throw invalid(path, `${width}x${height} pixels in ${tiled ? `${blockW}x${blockH} tiles` : `strips of ${blockH} rows`} make ${expected} ${kind}s, but it lists ${Math.min(offsets.length, counts.length)}`);
  }
  let bitsPerPixel = 0;
  for (let s = 0; s < spp; s++) bitsPerPixel += image.getBitsPerSample(s);
  const bitsPerBlockPixel = planar ? bitsPerPixel / spp : bitsPerPixel;
  const compression = ((await numbers(image, 'Compression')) ?? [1])[0];
  let stored = 0;
  let decoded = 0;
  for (let i = 0; i < expected; i++) {
    const o = offsets[i];
    const c = counts[i];
    if (c === 0) continue; // a block GDAL left empty (SPARSE_OK): read as nodata
    if (o + c > fileSize) throw invalid(path, `${kind} ${i + 1} (${c} bytes at offset ${o}) runs past the end of the file (${fileSize} bytes)`);
    // the last strip of an image holds only the rows left; tiles are whole
    const rows = tiled ? blockH : Math.min(blockH, height - Math.floor((i % (across * down)) / across) * blockH);
    const need = Math.ceil((blockW * bitsPerBlockPixel) / 8) * rows;
    if (compression === 1 && c < need) throw invalid(path, `uncompressed ${kind} ${i + 1} holds ${c} bytes, its pixels take ${need}`);
    stored += c;
    decoded += need;
  }
  if (stored === 0) throw invalid(path, `its ${expected} ${kind}s are all empty: the file holds no pixels`);
  const ratio = MAX_RATIO[compression] ?? (compression === 1 ? 1 : MAX_RATIO_OTHER);
  if (decoded > stored * ratio) {
    throw invalid(
      path,
      `it declares ${width}x${height} pixels (${decoded} bytes decoded) but holds ${stored} bytes of pixels, more than ${CODEC_NAMES[compression] ?? `compression ${compression}`} can give (${ratio}:1 at most)`,
    );
  }
}
