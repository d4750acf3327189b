// Domain errors: every module throws TuileError with a code; each face (CLI, OGC, JSON API) renders it.

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
