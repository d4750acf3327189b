// PMTiles header: the fixed 127-byte little-endian header and its enums (spec "Header Design").

import { TuileError } from '../../errors.js';

export type TileType = 'png' | 'jpg' | 'webp';

// spec "Header Design": the header is a fixed 127 bytes and, with the root directory, must fit in the
// first 16384 bytes so that a client gets both with one request.
export const HEADER_BYTES = 127;
export const ROOT_LIMIT = 16384;
const MAGIC = 'PMTiles';
export const SPEC_VERSION = 3;

// spec header enums (offsets 97-99)
export const COMPRESSION_UNKNOWN = 0;
export const COMPRESSION_NONE = 1;
export const COMPRESSION_GZIP = 2;
export const COMPRESSION_BROTLI = 3;
export const TILE_TYPE_CODES: Record<TileType, number> = { png: 2, jpg: 3, webp: 4 };

export const TWO_32 = 2 ** 32;

export function corrupt(what: string): TuileError {
  return new TuileError('InvalidInput', `corrupt PMTiles archive: ${what}`);
}

export interface PMTilesHeader {
  specVersion: number;
  rootDirectoryOffset: number;
  rootDirectoryLength: number;
  jsonMetadataOffset: number;
  jsonMetadataLength: number;
  leafDirectoryOffset: number;
  leafDirectoryLength: number;
  tileDataOffset: number;
  tileDataLength: number;
  numAddressedTiles: number; // 0 if unknown
  numTileEntries: number;
  numTileContents: number;
  clustered: boolean;
  internalCompression: number; // 0 unknown, 1 none, 2 gzip, 3 brotli, 4 zstd
  tileCompression: number; // same enum; raster tiles are stored as is (1)
  tileType: TileType | 'other'; // 'other' covers unknown, MVT, AVIF, ...
  tileTypeCode: number;
  minZoom: number;
  maxZoom: number;
  bounds: [number, number, number, number]; // lon/lat w, s, e, n
  center: [number, number, number]; // lon, lat, zoom
}

function setU64(v: DataView, at: number, n: number): void {
  v.setUint32(at, n % TWO_32, true);
  v.setUint32(at + 4, Math.floor(n / TWO_32), true);
}

function getU64(v: DataView, at: number, field: string): number {
  const hi = v.getUint32(at + 4, true);
  if (hi >= 2 ** 21) throw corrupt(`${field} beyond 2^53`);
  return hi * TWO_32 + v.getUint32(at, true);
}

// spec: longitudes and latitudes are signed 32-bit integers of degrees * 10^7
const e7 = (deg: number): number => Math.round(deg * 1e7);

export function encodeHeader(h: PMTilesHeader): Uint8Array {
  const buf = new Uint8Array(HEADER_BYTES);
  const v = new DataView(buf.buffer);
  buf.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint8(7, h.specVersion);
  setU64(v, 8, h.rootDirectoryOffset);
  setU64(v, 16, h.rootDirectoryLength);
  setU64(v, 24, h.jsonMetadataOffset);
  setU64(v, 32, h.jsonMetadataLength);
  setU64(v, 40, h.leafDirectoryOffset);
  setU64(v, 48, h.leafDirectoryLength);
  setU64(v, 56, h.tileDataOffset);
  setU64(v, 64, h.tileDataLength);
  setU64(v, 72, h.numAddressedTiles);
  setU64(v, 80, h.numTileEntries);
  setU64(v, 88, h.numTileContents);
  v.setUint8(96, h.clustered ? 1 : 0);
  v.setUint8(97, h.internalCompression);
  v.setUint8(98, h.tileCompression);
  v.setUint8(99, h.tileTypeCode);
  v.setUint8(100, h.minZoom);
  v.setUint8(101, h.maxZoom);
  v.setInt32(102, e7(h.bounds[0]), true);
  v.setInt32(106, e7(h.bounds[1]), true);
  v.setInt32(110, e7(h.bounds[2]), true);
  v.setInt32(114, e7(h.bounds[3]), true);
  v.setUint8(118, h.center[2]);
  v.setInt32(119, e7(h.center[0]), true);
  v.setInt32(123, e7(h.center[1]), true);
  return buf;
}

export function decodeHeader(buf: Uint8Array): PMTilesHeader {
  if (new TextDecoder('latin1').decode(buf.subarray(0, 7)) !== MAGIC) {
    throw new TuileError('InvalidInput', 'not a PMTiles archive (bad magic number)');
  }
  if (buf[7] !== SPEC_VERSION) {
    throw new TuileError('InvalidInput', `PMTiles spec version ${buf[7]} is not supported (only ${SPEC_VERSION})`);
  }
  const v = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  const code = v.getUint8(99);
  const type = (Object.keys(TILE_TYPE_CODES) as TileType[]).find((t) => TILE_TYPE_CODES[t] === code);
  return {
    specVersion: buf[7],
    rootDirectoryOffset: getU64(v, 8, 'root directory offset'),
    rootDirectoryLength: getU64(v, 16, 'root directory length'),
    jsonMetadataOffset: getU64(v, 24, 'metadata offset'),
    jsonMetadataLength: getU64(v, 32, 'metadata length'),
    leafDirectoryOffset: getU64(v, 40, 'leaf directories offset'),
    leafDirectoryLength: getU64(v, 48, 'leaf directories length'),
    tileDataOffset: getU64(v, 56, 'tile data offset'),
    tileDataLength: getU64(v, 64, 'tile data length'),
    numAddressedTiles: getU64(v, 72, 'addressed tiles'),
    numTileEntries: getU64(v, 80, 'tile entries'),
    numTileContents: getU64(v, 88, 'tile contents'),
    clustered: v.getUint8(96) === 1,
    internalCompression: v.getUint8(97),
    tileCompression: v.getUint8(98),
    tileType: type ?? 'other',
    tileTypeCode: code,
    minZoom: v.getUint8(100),
    maxZoom: v.getUint8(101),
    bounds: [
      v.getInt32(102, true) / 1e7,
      v.getInt32(106, true) / 1e7,
      v.getInt32(110, true) / 1e7,
      v.getInt32(114, true) / 1e7,
    ],
    center: [v.getInt32(119, true) / 1e7, v.getInt32(123, true) / 1e7, v.getUint8(118)],
  };
}
