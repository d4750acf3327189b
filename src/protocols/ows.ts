// OGC exceptions (OWS Common 1.1 ExceptionReport) and the table from exception code to HTTP status.

import { XMLBuilder } from 'fast-xml-parser';

export type OwsCode =
  | 'MissingParameterValue'
  | 'InvalidParameterValue'
  | 'TileOutOfRange'
  | 'PointIJOutOfRange'
  | 'OperationNotSupported'
  | 'VersionNegotiationFailed'
  | 'InvalidUpdateSequence'
  | 'NoApplicableCode';

/** WMTS 1.0.0 tables 28 and 30, and OWS Common 1.1 table 25 */
export const OWS_STATUS: Record<OwsCode, number> = {
  MissingParameterValue: 400,
  InvalidParameterValue: 400,
  TileOutOfRange: 400,
  PointIJOutOfRange: 400,
  OperationNotSupported: 501,
  VersionNegotiationFailed: 400,
  InvalidUpdateSequence: 400,
  NoApplicableCode: 500,
};

export class OwsException extends Error {
  constructor(
    readonly code: OwsCode,
    message: string,
    readonly locator?: string,
    readonly status: number = OWS_STATUS[code],
  ) {
    super(message);
  }
}

// suppressBooleanAttributes off: the builder would otherwise write an attribute valued "true" bare (not XML)
const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@', format: true, suppressEmptyNode: true, suppressBooleanAttributes: false });

/** The ExceptionReport document; every text goes through the builder, so names from requests are escaped. */
export function exceptionReport(e: OwsException): string {
  const ex: Record<string, unknown> = { '@exceptionCode': e.code, ExceptionText: e.message };
  if (e.locator) ex['@locator'] = e.locator;
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    builder.build({
      ExceptionReport: {
        '@xmlns': 'http://www.opengis.net/ows/1.1',
        '@xmlns:xsi': 'http://www.w3.org/2001/XMLSchema-instance',
        '@xsi:schemaLocation': 'http://www.opengis.net/ows/1.1 http://schemas.opengis.net/ows/1.1.0/owsExceptionReport.xsd',
        '@version': '1.0.0',
        '@xml:lang': 'en',
        Exception: ex,
      },
    })
  );
}

export function exceptionResponse(e: OwsException): Response {
  return new Response(exceptionReport(e), {
    status: e.status,
    headers: { 'Content-Type': 'application/xml; charset=utf-8' },
  });
}
