import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { toApiError } from '../src/api/http.js';
import { HTTP_STATUS, jsonError, statusOf, TuileError, type ErrorCode } from '../src/errors.js';
import { exceptionResponse } from '../src/protocols/ows.js';

const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });

describe('the one error table', () => {
  it('gives each code one status, rendered alike by the JSON protocols and the API', () => {
    for (const code of Object.keys(HTTP_STATUS) as ErrorCode[]) {
      const err = new TuileError(code, `a ${code} & <more>`);
      const status = HTTP_STATUS[code];
      expect(statusOf(err)).toBe(status);
      const j = jsonError(err);
      expect(j.status).toBe(status);
      expect(j.body.error_description).toEqual([`a ${code} & <more>`]);
      if (status >= 500) expect(j.body.error).toMatch(/^(internal_error|not_implemented)$/);
      const api = toApiError(err);
      if (status < 500) expect([api.status, api.error]).toEqual([status, code]);
      else expect([api.status, api.error]).toEqual([500, 'internal_error']);
    }
    expect(statusOf(new Error('x'))).toBe(500);
    expect(jsonError(new Error('boom')).body).toEqual({ error: 'internal_error', error_description: ['boom'] });
  });

  it('renders the OWS exceptionCode, locator and escaped text of WMTS 07-057r7 tables 28 and 30', async () => {
    const cases: [ErrorCode, string, number][] = [
      ['MissingParameter', 'MissingParameterValue', 400],
      ['InvalidParameter', 'InvalidParameterValue', 400],
      ['TileOutOfRange', 'TileOutOfRange', 400],
      ['PointOutOfRange', 'PointIJOutOfRange', 400],
      ['NotSupported', 'OperationNotSupported', 501],
      ['VersionNegotiationFailed', 'VersionNegotiationFailed', 400],
      ['Unauthorized', 'NoApplicableCode', 401],
      ['Forbidden', 'NoApplicableCode', 403],
    ];
    for (const [code, owsCode, status] of cases) {
      const r = exceptionResponse(new TuileError(code, `bad <${code}>`, { locator: 'LAYER' }), 'test');
      expect(r.status).toBe(status);
      expect(r.headers.get('Content-Type')).toBe('application/xml; charset=utf-8');
      const ex = xml.parse(await r.text()).ExceptionReport.Exception;
      expect([ex['@exceptionCode'], ex['@locator'], ex.ExceptionText]).toEqual([owsCode, 'LAYER', `bad <${code}>`]);
    }
    const r = exceptionResponse(new Error('disk on fire'), 'test');
    expect(r.status).toBe(500);
    const ex = xml.parse(await r.text()).ExceptionReport.Exception;
    expect([ex['@exceptionCode'], ex.ExceptionText]).toEqual(['NoApplicableCode', 'internal error']);
  });
});
