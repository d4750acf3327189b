// Domain errors: every module throws TuileError with a code; each face (CLI, OGC, JSON API) renders it.

import { basename, resolve } from 'node:path';

export type ErrorCode =
  | 'InvalidInput' // unreadable, truncated or corrupt input file
  | 'NotGeoreferenced'
  | 'UnsupportedCrs'
  | 'UnsupportedRaster' // sample format, band count, ... we cannot handle
  | 'InvalidParameter'
  | 'NotFound'
  | 'OutOfRange' // a tile outside the layer's levels or limits
  | 'Conflict'
  | 'OutputError' // cannot write the output
  | 'Internal';

export class TuileError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'TuileError';
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
