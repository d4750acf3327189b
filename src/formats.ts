// The one table of tile format names: tuile's own (`jpg`, `png`, `webp`: CLI options, processing parameters,
// descriptors), the MIME types and file extensions the protocols serve, the Entrepôt's `compression` of a stored
// data (`JPG`...), and OGC API's `?f=` names. Kept apart from the codec so that the CLI, the API and the job
// runner read it without loading sharp.

export type TileFormat = 'jpg' | 'png' | 'webp';

export interface FormatNames {
  mime: string;
  /** the extension of the tile URLs tuile writes */
  ext: string;
  /** the Entrepôt's name of the format, a stored data's `type_infos.compression` */
  compression: string;
  /** OGC API - Tiles' `?f=` name */
  f: string;
}

export const FORMATS: Record<TileFormat, FormatNames> = {
  jpg: { mime: 'image/jpeg', ext: 'jpg', compression: 'JPG', f: 'jpeg' },
  png: { mime: 'image/png', ext: 'png', compression: 'PNG', f: 'png' },
  webp: { mime: 'image/webp', ext: 'webp', compression: 'WEBP', f: 'webp' },
};

export const TILE_FORMATS = ['jpg', 'png', 'webp'] as const satisfies readonly TileFormat[];

/** A format named by tuile's name or an extension, any case (`jpeg` too, as GDAL and browsers write it). */
export function formatOfName(s: string): TileFormat | undefined {
  const v = s.toLowerCase();
  if (v === 'jpeg') return 'jpg';
  return (TILE_FORMATS as readonly string[]).includes(v) ? (v as TileFormat) : undefined;
}

/** A format named as formatOfName takes it, or by its MIME type (`image/png`). */
export function parseFormat(s: string): TileFormat | undefined {
  return formatOfName(s.replace(/^image\//i, ''));
}

/** The format of an Entrepôt `compression` name (`JPG`, `PNG`, `WEBP`). */
export function formatOfCompression(c: string): TileFormat | undefined {
  return TILE_FORMATS.find((f) => FORMATS[f].compression === c);
}
