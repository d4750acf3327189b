// GeoTIFF deliveries: georeferencing, CRS, band layout, nodata/alpha/mask, and windowed 8-bit reads.
// Never reads a whole image: every pixel access goes through readWindow (DESIGN 4, "Read").

import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { GeoTIFF, GeoTIFFImage } from 'geotiff';
import { TuileError, errorMessage } from '../errors.js';
import type { Crs } from '../geo/crs.js';
import { crsFromGeoKeys } from '../geo/geokeys.js';
import { readGeoTransform } from './georef.js';
import { releaseBlock, undoPredictor8 } from './inflate.js';
import { bandRanges, nodataMask, rangeOf, scaleToBytes, type ScaleRange } from './scale.js';
import { checkImageBlocks, checkTiffStructure } from './tiffcheck.js';
import type { SourceWindow } from './resample.js';

// geotiff.js's CommonJS build, required: its ES module graph is slower to load, in each thread of a build
const { fromFile, getDecoder } = createRequire(import.meta.url)('geotiff') as typeof import('geotiff');

/** Affine georeferencing, GDAL order: X = a0 + col*a1 + row*a2; Y = a3 + col*a4 + row*a5 (pixel corners). */
/** Largest strip or tile a window may decode. */
const MAX_BLOCK_BYTES = 256 * 2 ** 20;

export type GeoTransform = [number, number, number, number, number, number];

export interface RasterInfo {
  path: string;
  width: number;
  height: number;
  /** Colour bands we produce: 1 (grey) or 3 (RGB); alpha is separate. */
  bands: number;
  geoTransform: GeoTransform;
  crs: Crs;
  nodata: number | null;
  alphaSample: number | null; // index of the alpha sample in the file
  hasMask: boolean;
  palette: boolean;
  /** samples are YCbCr (JPEG-compressed RGB as GDAL writes it by default) and are converted to RGB */
  ycbcr: boolean;
  /** bits of each sample: 8, or 16 (mapped to bytes by `scale`) */
  sampleBits: number;
  /** MIN,MAX mapped to 0-255 per colour band (or one for all), as gdal_translate -scale; null: bytes as they are */
  scale: ScaleRange[] | null;
  samples: number[]; // file sample indices read as colour bands
}

export interface OpenOptions {
  /** 1-based band numbers to use as colour bands (e.g. [3,2,1] for a multispectral file). */
  bands?: number[];
  /** Refuse images with more pixels than this (decompression bombs, absurd headers). */
  maxPixels?: number;
  /** MIN,MAX to map onto 0-255, per colour band or one for all (gdal_translate -scale); required to read 16-bit samples */
  scale?: ScaleRange[];
  /** the scale of each file by path, where it has its own (the per-band minimum and maximum of a 16-bit file) */
  fileScales?: Record<string, ScaleRange[]>;
}

/** Rows xa..xb, ya..yb of a decoded block (left edge bx0, top by0, tw pixels wide) to copy into the window `out`
 * (W pixels wide, origin x0, y0). */
interface BlockRows {
  src: Uint8Array;
  tw: number;
  bx0: number;
  by0: number;
  xa: number;
  xb: number;
  ya: number;
  yb: number;
  out: Uint8Array;
  W: number;
  x0: number;
  y0: number;
}

/**
 * The rows of an RGB block whose 8-bit horizontal predictor is still to undo: the predictor's running sums along
 * each row, from the block's left edge, stored from xa on. Module functions, not closures of readBlocks: optimised in
 * the middle of one of its loops, a function is compiled whole, and the closure was compiled ~35 times a build.
 */
function copyPredictedRgb(rows: BlockRows): void {
  const { src, tw, bx0, by0, xa, xb, ya, yb, out, W, x0, y0 } = rows;
  for (let y = ya; y < yb; y++) {
    const r = (y - by0) * tw * 3;
    const from = r + (xa - bx0) * 3;
    const to = r + (xb - bx0) * 3;
    let c0 = 0;
    let c1 = 0;
    let c2 = 0;
    let i = r;
    for (; i < from; i += 3) {
      c0 = (c0 + src[i]) & 255;
      c1 = (c1 + src[i + 1]) & 255;
      c2 = (c2 + src[i + 2]) & 255;
    }
    for (let d = ((y - y0) * W + (xa - x0)) * 3; i < to; i += 3, d += 3) {
      c0 = (c0 + src[i]) & 255;
      c1 = (c1 + src[i + 1]) & 255;
      c2 = (c2 + src[i + 2]) & 255;
      out[d] = c0;
      out[d + 1] = c1;
      out[d + 2] = c2;
    }
  }
}

/** The rows of a decoded block (spp samples a pixel) into the window, the `wanted` samples only. */
function copyRows(rows: BlockRows, spp: number, wanted: number[], whole: boolean): void {
  const { src, tw, bx0, by0, xa, xb, ya, yb, out, W, x0, y0 } = rows;
  const nw = wanted.length;
  for (let y = ya; y < yb; y++) {
    const s0 = ((y - by0) * tw + (xa - bx0)) * spp;
    const d0 = ((y - y0) * W + (xa - x0)) * nw;
    if (whole) {
      out.set(src.subarray(s0, s0 + (xb - xa) * spp), d0);
      continue;
    }
    for (let x = 0, s = s0, d = d0; x < xb - xa; x++, s += spp, d += nw) {
      for (let k = 0; k < nw; k++) out[d + k] = src[s + wanted[k]];
    }
  }
}


const TIFF_EXTRASAMPLE_ASSOCALPHA = 1;
const TIFF_EXTRASAMPLE_UNASSALPHA = 2;
const PHOTOMETRIC_PALETTE = 3;
const PHOTOMETRIC_RGB = 2;
const PHOTOMETRIC_YCBCR = 6;
const SUBFILE_MASK = 4;
const SUBFILE_REDUCED = 1;

/** In place, JFIF full-range YCbCr to RGB (what libtiff's JPEGCOLORMODE_RGB gives GDAL). */
function ycbcrToRgb(d: Uint8Array): void {
  for (let i = 0; i + 2 < d.length; i += 3) {
    const y = d[i];
    const cb = d[i + 1] - 128;
    const cr = d[i + 2] - 128;
    const r = y + 1.402 * cr;
    const g = y - 0.344136 * cb - 0.714136 * cr;
    const b = y + 1.772 * cb;
    d[i] = r < 0 ? 0 : r > 255 ? 255 : Math.round(r);
    d[i + 1] = g < 0 ? 0 : g > 255 ? 255 : Math.round(g);
    d[i + 2] = b < 0 ? 0 : b > 255 ? 255 : Math.round(b);
  }
}

export function invertGeoTransform(g: GeoTransform): GeoTransform {
  const det = g[1] * g[5] - g[2] * g[4];
  if (det === 0 || !Number.isFinite(det)) throw new TuileError('NotGeoreferenced', 'degenerate geotransform');
  const i1 = g[5] / det;
  const i2 = -g[2] / det;
  const i4 = -g[4] / det;
  const i5 = g[1] / det;
  return [-g[0] * i1 - g[3] * i2, i1, i2, -g[0] * i4 - g[3] * i5, i4, i5];
}

async function tagValue(image: GeoTIFFImage, name: string): Promise<any> {
  const fd = image.fileDirectory as any;
  if (!fd.hasTag(name)) return undefined;
  return fd.loadValue(name);
}

/** An open GeoTIFF delivery file. One instance per thread; reads are windowed. */
export class GeoTiffSource {
  private decoder: Promise<{ decoder: unknown; deferred: boolean }> | null = null;

  private constructor(
    readonly info: RasterInfo,
    private readonly tiff: GeoTIFF,
    private readonly image: GeoTIFFImage,
    private readonly mask: GeoTIFFImage | null,
    private readonly colorMap: Uint16Array | null,
    /** chunky 8-bit samples with a codec that needs no per-file tables: blocks can be copied as bytes */
    private readonly blockCopy: boolean,
  ) {}

  static async open(path: string, opts: OpenOptions = {}): Promise<GeoTiffSource> {
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      throw new TuileError('InvalidInput', `${path}: cannot read file (${errorMessage(err)})`);
    }
    if (size === 0) throw new TuileError('InvalidInput', `${path}: empty file`);
    await checkTiffStructure(path, size);
    let tiff: GeoTIFF;
    let image: GeoTIFFImage;
    let count: number;
    try {
      tiff = await fromFile(path);
      count = await tiff.getImageCount();
      image = await tiff.getImage(0);
    } catch (err) {
      throw new TuileError('InvalidInput', `${path}: not a readable TIFF (${errorMessage(err)})`);
    }
    try {
      const source = await GeoTiffSource.describe(path, tiff, image, count, opts);
      await checkImageBlocks(image, path, size);
      return source;
    } catch (err) {
      await tiff.close();
      if (err instanceof TuileError) throw err;
      throw new TuileError('InvalidInput', `${path}: corrupt TIFF (${errorMessage(err)})`);
    }
  }

  private static async describe(
    path: string,
    tiff: GeoTIFF,
    image: GeoTIFFImage,
    count: number,
    opts: OpenOptions,
  ): Promise<GeoTiffSource> {
    const width = image.getWidth();
    const height = image.getHeight();
    if (!(width > 0 && height > 0)) throw new TuileError('InvalidInput', `${path}: image has no pixels`);
    const maxPixels = opts.maxPixels ?? 2 ** 36;
    if (width * height > maxPixels) {
      throw new TuileError('UnsupportedRaster', `${path}: ${width}x${height} pixels exceeds the limit of ${maxPixels}`);
    }
    const spp = image.getSamplesPerPixel();
    // a window decodes whole strips or tiles: one huge block (a single-strip file, a decompression bomb)
    // would take its whole size in memory, whatever the window
    const blockBytes = image.getTileWidth() * image.getTileHeight() * spp;
    if (blockBytes > MAX_BLOCK_BYTES) {
      throw new TuileError(
        'UnsupportedRaster',
        `${path}: its ${image.getTileWidth()}x${image.getTileHeight()} blocks decode to ${Math.round(blockBytes / 2 ** 20)} MiB each, over the limit of ${MAX_BLOCK_BYTES / 2 ** 20} MiB; tile it (gdal_translate -co TILED=YES)`,
      );
    }
    const sampleBits = image.getBitsPerSample(0);
    for (let s = 0; s < spp; s++) {
      const bits = image.getBitsPerSample(s);
      const fmt = image.getSampleFormat(s);
      if ((bits !== 8 && bits !== 16) || bits !== sampleBits || (fmt !== 1 && fmt !== undefined)) {
        throw new TuileError(
          'UnsupportedRaster',
          `${path}: sample ${s + 1} is ${bits}-bit ${fmt === 3 ? 'float' : fmt === 2 ? 'signed' : 'unsigned'}; only 8-bit and 16-bit unsigned samples are supported (convert with gdal_translate -ot Byte -scale)`,
        );
      }
    }
    const geoKeys = image.getGeoKeys();
    if (!geoKeys) throw new TuileError('NotGeoreferenced', `${path}: no GeoKeys (not a GeoTIFF)`);
    const pixelIsArea = geoKeys.GTRasterTypeGeoKey !== 2;
    let crs: Crs;
    try {
      crs = crsFromGeoKeys(geoKeys as Record<string, unknown>);
    } catch (err) {
      if (err instanceof TuileError) throw new TuileError(err.code, `${path}: ${err.message}`);
      throw err;
    }
    const geoTransform = readGeoTransform(image, pixelIsArea, path);

    const photometric = (await tagValue(image, 'PhotometricInterpretation')) as number | undefined;
    const extra = ((await tagValue(image, 'ExtraSamples')) as number[] | undefined) ?? [];
    // Extra samples are the last ones; an associated/unassociated alpha is the first of them.
    const nExtra = extra.length;
    let alphaSample: number | null = null;
    if (nExtra > 0 && (extra[0] === TIFF_EXTRASAMPLE_ASSOCALPHA || extra[0] === TIFF_EXTRASAMPLE_UNASSALPHA)) {
      alphaSample = spp - nExtra;
    }
    let samples: number[];
    let palette = false;
    let colorMap: Uint16Array | null = null;
    if (opts.bands && opts.bands.length > 0) {
      for (const b of opts.bands) {
        if (!Number.isInteger(b) || b < 1 || b > spp) {
          throw new TuileError('InvalidParameter', `${path}: band ${b} does not exist (the file has ${spp})`);
        }
      }
      if (opts.bands.length !== 1 && opts.bands.length !== 3) {
        throw new TuileError('InvalidParameter', `select 1 or 3 bands, not ${opts.bands.length}`);
      }
      samples = opts.bands.map((b) => b - 1);
    } else if (photometric === PHOTOMETRIC_PALETTE) {
      if (spp !== 1) throw new TuileError('UnsupportedRaster', `${path}: paletted image with ${spp} samples`);
      colorMap = (await tagValue(image, 'ColorMap')) as Uint16Array | undefined ?? null;
      if (!colorMap || colorMap.length < 3 * 256) throw new TuileError('InvalidInput', `${path}: paletted image without a colour map`);
      palette = true;
      samples = [0];
    } else {
      const colour = alphaSample === null ? spp - (photometric === PHOTOMETRIC_RGB || photometric === PHOTOMETRIC_YCBCR ? nExtra : 0) : alphaSample;
      if (photometric === PHOTOMETRIC_RGB || photometric === PHOTOMETRIC_YCBCR) {
        if (colour < 3) throw new TuileError('UnsupportedRaster', `${path}: RGB image with ${colour} colour samples`);
        samples = [0, 1, 2];
      } else if (colour === 1 || alphaSample !== null) {
        if (alphaSample !== null && alphaSample !== 1 && alphaSample !== 3) {
          throw new TuileError('UnsupportedRaster', `${path}: ${alphaSample} colour samples before the alpha`);
        }
        samples = alphaSample === 3 ? [0, 1, 2] : [0];
      } else if (spp === 1) {
        samples = [0];
      } else if (spp === 3 || spp === 4) {
        // Untagged multi-sample images: read the first three as RGB, a fourth as alpha if present.
        samples = [0, 1, 2];
        if (spp === 4) alphaSample = 3;
      } else {
        throw new TuileError(
          'UnsupportedRaster',
          `${path}: ${spp} bands without RGB interpretation; choose 1 or 3 of them (CLI: --bands 3,2,1)`,
        );
      }
    }
    if (opts.bands && alphaSample !== null && opts.bands.includes(alphaSample + 1)) alphaSample = null;

    // Internal mask: a full-resolution subfile flagged as a transparency mask (GDAL_TIFF_INTERNAL_MASK).
    let mask: GeoTIFFImage | null = null;
    for (let i = 1; i < count; i++) {
      const sub = await tiff.getImage(i);
      const kind = ((await tagValue(sub, 'NewSubfileType')) as number | undefined) ?? 0;
      if (kind & SUBFILE_MASK && !(kind & SUBFILE_REDUCED) && sub.getWidth() === width && sub.getHeight() === height) {
        mask = sub;
        break;
      }
    }
    const nodata = image.getGDALNoData();
    const info: RasterInfo = {
      path,
      width,
      height,
      bands: palette ? 3 : samples.length,
      geoTransform,
      crs,
      nodata: nodata === null || Number.isNaN(nodata) ? null : nodata,
      alphaSample,
      hasMask: mask !== null,
      palette,
      ycbcr: photometric === PHOTOMETRIC_YCBCR && !opts.bands,
      samples,
      sampleBits,
      scale: opts.fileScales?.[path] ?? opts.scale ?? null,
    };
    if (info.scale && !palette) rangeOf(info.scale, 0, info.bands);
    const planar = ((await tagValue(image, 'PlanarConfiguration')) as number | undefined) ?? 1;
    const compression = ((await tagValue(image, 'Compression')) as number | undefined) ?? 1;
    const blockCopy = (planar === 1 || spp === 1) && [1, 5, 8, 32946, 32773].includes(compression) && sampleBits === 8 && !info.scale;
    return new GeoTiffSource(info, tiff, image, mask, colorMap, blockCopy);
  }

  /**
   * Reads source pixels [x0, x1) x [y0, y1) (clamped by the caller to the image) as interleaved 8-bit
   * colour bands plus a merged validity (alpha band, internal mask, nodata). `scratch`, a buffer the caller no
   * longer reads, may be reused for the pixels.
   */
  async readWindow(x0: number, y0: number, x1: number, y1: number, scratch?: Uint8Array): Promise<SourceWindow> {
    const { info } = this;
    const width = x1 - x0;
    const height = y1 - y0;
    if (x0 < 0 || y0 < 0 || x1 > info.width || y1 > info.height || width <= 0 || height <= 0) {
      throw new TuileError('Internal', `window ${x0},${y0},${x1},${y1} outside ${info.width}x${info.height}`);
    }
    const wanted = info.alphaSample === null ? info.samples : [...info.samples, info.alphaSample];
    if (info.sampleBits !== 8 && !info.scale) {
      throw new TuileError('InvalidParameter', `${info.path}: its samples are ${info.sampleBits}-bit: give the MIN,MAX to map onto 0-255 (--scale)`);
    }
    let raw: Uint8Array;
    let nodataAlpha: Uint8Array | null = null;
    try {
      raw = this.blockCopy
        ? await this.readBlocks(x0, y0, x1, y1, wanted, scratch)
        : ((await this.image.readRasters({ window: [x0, y0, x1, y1], samples: wanted, interleave: true })) as unknown as Uint8Array);
    } catch (err) {
      throw new TuileError('InvalidInput', `${info.path}: cannot decode pixels ${x0},${y0}-${x1},${y1} (${errorMessage(err)})`);
    }
    const n = width * height;
    if (info.scale && !info.palette) {
      // nodata is a value of the samples as stored, so it is found before they are scaled
      nodataAlpha = nodataMask(raw, n, wanted.length, info.bands, info.nodata);
      raw = scaleToBytes(raw, n, wanted.length, info.bands, info.scale, 2 ** info.sampleBits - 1);
    }
    const nIn = wanted.length;
    const bands = info.bands;
    let data: Uint8Array;
    let alpha: Uint8Array | null = null;
    if (info.palette) {
      const cm = this.colorMap!;
      data = new Uint8Array(n * 3);
      for (let i = 0; i < n; i++) {
        const v = raw[i];
        // TIFF colour maps are 16-bit; GDAL scales them to 8 bits by dividing by 257.
        data[i * 3] = Math.round(cm[v] / 257);
        data[i * 3 + 1] = Math.round(cm[256 + v] / 257);
        data[i * 3 + 2] = Math.round(cm[512 + v] / 257);
      }
    } else if (nIn === bands) {
      data = raw.length === n * bands ? raw : raw.subarray(0, n * bands);
    } else {
      data = new Uint8Array(n * bands);
      alpha = new Uint8Array(n);
      for (let i = 0, j = 0; i < n; i++) {
        for (let b = 0; b < bands; b++) data[i * bands + b] = raw[j++];
        alpha[i] = raw[j++];
      }
    }
    if (info.ycbcr) ycbcrToRgb(data);
    if (nodataAlpha) {
      if (!alpha) alpha = nodataAlpha;
      else for (let i = 0; i < n; i++) if (nodataAlpha[i] === 0) alpha[i] = 0;
    } else if (info.nodata !== null && info.nodata >= 0 && info.nodata <= 255 && Number.isInteger(info.nodata) && !info.scale) {
      // A pixel is nodata when every band holds the value (GDAL's unified source nodata).
      const nd = info.nodata;
      const src = info.palette ? raw : data;
      const sb = info.palette ? 1 : bands;
      for (let i = 0; i < n; i++) {
        let all = true;
        for (let b = 0; b < sb; b++) {
          if (src[i * sb + b] !== nd) {
            all = false;
            break;
          }
        }
        if (all) {
          if (!alpha) alpha = new Uint8Array(n).fill(255);
          alpha[i] = 0;
        }
      }
    }
    if (this.mask) {
      let m: Uint8Array;
      try {
        m = (await this.mask.readRasters({ window: [x0, y0, x1, y1], samples: [0], interleave: true })) as unknown as Uint8Array;
      } catch (err) {
        throw new TuileError('InvalidInput', `${info.path}: cannot decode the internal mask (${errorMessage(err)})`);
      }
      if (!alpha) alpha = new Uint8Array(n).fill(255);
      for (let i = 0; i < n; i++) if (m[i] === 0) alpha[i] = 0;
    }
    return { x0, y0, width, height, bands, data, alpha };
  }

  /**
   * Decodes the strips or tiles under a window and copies their rows with typed-array copies: geotiff.js's
   * readRasters reads every sample through a DataView call, which costs more than the decoding itself.
   */
  private async readBlocks(
    x0: number,
    y0: number,
    x1: number,
    y1: number,
    wanted: number[],
    scratch?: Uint8Array,
  ): Promise<Uint8Array> {
    const img = this.image;
    const tw = img.getTileWidth();
    const th = img.getTileHeight();
    const spp = img.getSamplesPerPixel();
    const nw = wanted.length;
    const W = x1 - x0;
    // every byte is written below: a caller's spare buffer needs no clearing. A new one gets a quarter more room,
    // so that the next windows of a build, a little larger or smaller, fit in it (each new one is page faults)
    const size = W * (y1 - y0) * nw;
    const out = (scratch && scratch.length >= size ? scratch : new Uint8Array(Math.ceil(size * 1.25))).subarray(0, size);
    this.decoder ??= this.makeDecoder();
    const { decoder, deferred } = await this.decoder;
    const whole = nw === spp && wanted.every((s, i) => s === i);
    // a decoded block's rows into the window (the loops in functions of their own: see copyPredictedRgb)
    const copyBlock = (data: ArrayBufferLike, bx: number, by: number): void => {
      const src = new Uint8Array(data);
      const rows = img.getBlockHeight(by);
      const ya = Math.max(y0, by * th);
      const yb = Math.min(y1, by * th + rows);
      const xa = Math.max(x0, bx * tw);
      const xb = Math.min(x1, bx * tw + tw);
      const block: BlockRows = { src, tw, bx0: bx * tw, by0: by * th, xa, xb, ya, yb, out, W, x0, y0 };
      if (deferred && whole && spp === 3) {
        copyPredictedRgb(block);
        return;
      }
      if (deferred) undoPredictor8(src.subarray(0, tw * rows * spp), tw * spp, spp);
      copyRows(block, spp, wanted, whole);
    };
    const jobs: Promise<void>[] = [];
    for (let by = Math.floor(y0 / th); by * th < y1; by++) {
      for (let bx = Math.floor(x0 / tw); bx * tw < x1; bx++) {
        jobs.push(
          img.getTileOrStrip(bx, by, 0, decoder as any).then((block) => {
            copyBlock(block.data, bx, by);
            releaseBlock(block.data);
          }),
        );
      }
    }
    await Promise.all(jobs);
    return out;
  }

  /** The block decoder; `deferred`: it leaves the 8-bit predictor of deflate blocks to readBlocks. */
  private async makeDecoder(): Promise<{ decoder: unknown; deferred: boolean }> {
    const fd = this.image.fileDirectory as any;
    const compression = fd.getValue('Compression') ?? 1;
    const bitsPerSample = await fd.loadValue('BitsPerSample');
    const predictor = (await fd.loadValue('Predictor')) ?? 1;
    const bits = ArrayBuffer.isView(bitsPerSample) || Array.isArray(bitsPerSample) ? Array.from(bitsPerSample as number[]) : [bitsPerSample];
    const deferred = (compression === 8 || compression === 32946) && predictor === 2 && bits.every((b) => b === 8);
    const decoder = await getDecoder(compression, {
      tileWidth: this.image.getTileWidth(),
      tileHeight: this.image.getTileHeight(),
      planarConfiguration: 1,
      bitsPerSample,
      predictor,
      deferPredictor: deferred,
    } as any);
    return { decoder, deferred };
  }

  /** Each colour band's minimum and maximum over the raster, nodata left out (what gdal_translate -scale maps onto 0-255). */
  sampleRanges(): Promise<ScaleRange[]> {
    const { info } = this;
    return bandRanges(info, async (y0, y1) => {
      try {
        return (await this.image.readRasters({ window: [0, y0, info.width, y1], samples: info.samples, interleave: true })) as unknown as ArrayLike<number>;
      } catch (err) {
        throw new TuileError('InvalidInput', `${info.path}: cannot decode pixels 0,${y0}-${info.width},${y1} (${errorMessage(err)})`);
      }
    });
  }

  async close(): Promise<void> {
    await this.tiff.close();
  }
}
