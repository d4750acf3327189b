// Domain errors: every module throws TuileError with a code; each face (CLI, OGC, JSON API) renders it.

import { basename, resolve } from 'node:path';

export type ErrorCode =
  | 'InvalidInput' // unreadable, truncated or corrupt input file
  | 'NotGeoreferenced'
  | 'UnsupportedCrs'
  | 'UnsupportedRaster' // sample format, band count, ... we cannot handle
  | 'InvalidParameter'
  | 'MissingParameter'
  | 'VersionNegotiationFailed'
  | 'TileOutOfRange' // a request's tile matrix, row or column outside the layer's limits (WMTS)
  | 'PointOutOfRange' // a pixel (I, J) outside its tile
  | 'NotFound'
  | 'OutOfRange' // a tile outside the layer's levels or limits, as readTile finds it
  | 'Unauthorized' // no key where one is needed
  | 'Forbidden' // a key that does not open the resource
  | 'NotAcceptable' // a representation the resource does not have
  | 'Conflict'
  | 'NotSupported' // an operation the server does not implement
  | 'OutputError' // cannot write the output
  | 'Internal';

/**
 * The one table from error code to HTTP status (titiler's DEFAULT_STATUS_CODES idea): every face renders
 * a TuileError with this status, in its own form. A tile outside a layer is a resource that does not exist
 * (OGC 20-057 /req/core/tc-error, TMS, XYZ); WMTS validates its parameters first and says TileOutOfRange,
 * a bad request (07-057r7 table 23, OWS Common table 25 for the other codes).
 */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  InvalidInput: 400,
  NotGeoreferenced: 400,
  UnsupportedCrs: 400,
  UnsupportedRaster: 400,
  InvalidParameter: 400,
  MissingParameter: 400,
  VersionNegotiationFailed: 400,
  TileOutOfRange: 400,
  PointOutOfRange: 400,
  NotFound: 404,
  OutOfRange: 404,
  Unauthorized: 401,
  Forbidden: 403,
  NotAcceptable: 406,
  Conflict: 409,
  NotSupported: 501,
  OutputError: 500,
  Internal: 500,
};

/** The HTTP status of any error: the table's for a TuileError, 500 for anything else. */
export function statusOf(err: unknown): number {
  return err instanceof TuileError ? HTTP_STATUS[err.code] : 500;
}

/** The `error` member of a JSON error body (the Entrepôt's form) for a status. */
const JSON_ERROR: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  406: 'not_acceptable',
  409: 'conflict',
  501: 'not_implemented',
};

/** An error as the JSON `{error, error_description}` body of the tile protocols (XYZ, OGC API, the app). */
export function jsonError(err: unknown): { status: number; body: { error: string; error_description: string[] } } {
  const status = statusOf(err);
  return { status, body: { error: JSON_ERROR[status] ?? 'internal_error', error_description: [errorMessage(err)] } };
}

export class TuileError extends Error {
  readonly code: ErrorCode;
  /** what in the request is wrong (a parameter name), for the protocols that say it (OWS `locator`) */
  readonly locator?: string;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; locator?: string }) {
    super(message, options);
    this.code = code;
    this.name = 'TuileError';
    if (options?.locator) this.locator = options.locator;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A message for users, without the server's paths: a path under `dir` (the data folder) is reduced to its
 * file name, which is what a user knows it by.
 */
export function withoutPaths(message: string, dir: string): string {
  const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // the folder as configured and as resolved, the longer first
  const roots = [...new Set([resolve(dir), dir.replace(/\/+$/, '')])].sort((a, b) => b.length - a.length);
  const re = new RegExp(`(${roots.map(esc).join('|')})(/[^\\s'"]*)?`, 'g');
  return message.replace(re, (_m, _root: string, rest?: string) => (rest && rest.length > 1 ? basename(rest) : 'the data folder'));
}
