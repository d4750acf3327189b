// OGC exceptions (OWS Common 1.1 ExceptionReport): a TuileError rendered with the exceptionCode its code
// stands for and the status of the one table (errors.ts).

import { HTTP_STATUS, TuileError, type ErrorCode } from '../errors.js';
import { XML_TYPE, xmlDocument } from './xml.js';

export type OwsCode =
  | 'MissingParameterValue'
  | 'InvalidParameterValue'
  | 'TileOutOfRange'
  | 'PointIJOutOfRange'
  | 'OperationNotSupported'
  | 'VersionNegotiationFailed'
  | 'NoApplicableCode';

/** The exceptionCode of each error code (WMTS 1.0.0 tables 28 and 30, OWS Common 1.1 table 25); others NoApplicableCode. */
const OWS_CODE: Partial<Record<ErrorCode, OwsCode>> = {
  MissingParameter: 'MissingParameterValue',
  InvalidParameter: 'InvalidParameterValue',
  TileOutOfRange: 'TileOutOfRange',
  OutOfRange: 'TileOutOfRange',
  PointOutOfRange: 'PointIJOutOfRange',
  NotSupported: 'OperationNotSupported',
  VersionNegotiationFailed: 'VersionNegotiationFailed',
};

/** The ExceptionReport document; every text goes through the builder, so names from requests are escaped. */
export function exceptionReport(code: OwsCode, message: string, locator?: string): string {
  const ex: Record<string, unknown> = { '@exceptionCode': code, ExceptionText: message };
  if (locator) ex['@locator'] = locator;
  return xmlDocument({
    ExceptionReport: {
      '@xmlns': 'http://www.opengis.net/ows/1.1',
      '@xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
      '@xsi:schemaLocation': 'http://www.opengis.net/ows/1.1 http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd',
      '@version': '1.0.0',
      '@xml:lang': 'en',
      Exception: ex,
    },
  });
}

/** Any error as an ExceptionReport answer; one that is not a TuileError is logged and told as an internal error. */
export function exceptionResponse(err: unknown, where: string): Response {
  if (!(err instanceof TuileError)) {
    console.error(`tuile: ${where}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return new Response(exceptionReport('NoApplicableCode', 'internal error'), { status: 500, headers: { 'Content-Type': XML_TYPE } });
  }
  return new Response(exceptionReport(OWS_CODE[err.code] ?? 'NoApplicableCode', err.message, err.locator), {
    status: HTTP_STATUS[err.code],
    headers: { 'Content-Type': XML_TYPE },
  });
}
