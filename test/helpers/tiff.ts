// Test helper: hostile GeoTIFFs made byte by byte (a header that claims what the data does not hold):
// absurd dimensions, one huge strip, a pixel size that makes billions of tiles.

/** A little-endian, uncompressed, 8-bit grey GeoTIFF in EPSG:4326 whose header says what we ask. */
export function craftTiff(opts: { width: number; height: number; rowsPerStrip?: number; pixelDeg?: number; origin?: [number, number] }): Uint8Array {
  const rows = opts.rowsPerStrip ?? opts.height;
  const px = opts.pixelDeg ?? 0.001;
  const [lon, lat] = opts.origin ?? [2, 48];
  const geoKeys = [1, 1, 0, 3, 1024, 0, 1, 2, 1025, 0, 1, 1, 2048, 0, 1, 4326];
  // [tag, type, count, value or bytes]
  type Entry = [number, number, number, number | Buffer];
  const short = (v: number[]) => Buffer.from(new Uint16Array(v).buffer);
  const dbl = (v: number[]) => Buffer.from(new Float64Array(v).buffer);
  const data = Buffer.alloc(64);
  const entries: Entry[] = [
    [256, 4, 1, opts.width],
    [257, 4, 1, opts.height],
    [258, 3, 1, 8],
    [259, 3, 1, 1],
    [262, 3, 1, 1],
    [273, 4, 1, 0], // strip offset, patched below
    [277, 3, 1, 1],
    [278, 4, 1, rows],
    [279, 4, 1, data.length],
    [33550, 12, 3, dbl([px, px, 0])],
    [33922, 12, 6, dbl([0, 0, 0, lon, lat, 0])],
    [34735, 3, geoKeys.length, short(geoKeys)],
  ];
  const ifdSize = 2 + entries.length * 12 + 4;
  let extra = 8 + ifdSize;
  const blobs: Buffer[] = [];
  const ifd = Buffer.alloc(ifdSize);
  ifd.writeUInt16LE(entries.length, 0);
  entries.forEach(([tag, type, count, v], i) => {
    const o = 2 + i * 12;
    ifd.writeUInt16LE(tag, o);
    ifd.writeUInt16LE(type, o + 2);
    ifd.writeUInt32LE(count, o + 4);
    if (typeof v === 'number') {
      if (type === 3) ifd.writeUInt16LE(v, o + 8);
      else ifd.writeUInt32LE(v, o + 8);
    } else {
      ifd.writeUInt32LE(extra, o + 8);
      blobs.push(v);
      extra += v.length;
    }
  });
  // the strip offset: after the blobs
  ifd.writeUInt32LE(extra, 2 + 5 * 12 + 8);
  const header = Buffer.from([0x49, 0x49, 42, 0, 8, 0, 0, 0]);
  return new Uint8Array(Buffer.concat([header, ifd, ...blobs, data]));
}
