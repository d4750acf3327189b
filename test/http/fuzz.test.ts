// A bounded fuzz run of every route of `node dist/main.js` over real HTTP: generated bad requests (fast-check,
// fixed seed) for WMTS KVP and RESTful, TMS, XYZ, OGC API - Tiles, the viewer and other pages, the management
// API (methods, ids, queries, JSON bodies, tokens), uploads (paths, raw and multipart bodies around the size
// limit) and malformed HTTP on raw sockets. Every answer must be below 500 (a 501 OperationNotSupported is
// allowed for WMTS), with an error body in the protocol's own form (DESIGN 2 and 6); afterwards the process
// still runs, /health answers and a tile of the published layer has the bytes it had before the run.
//
//   TUILE_FUZZ_RUNS=N     generated requests per route family (default 300; bench/fuzz.sh runs 5000)
//   TUILE_FUZZ_SEED=S     seed of every family (default 42)
//   TUILE_FUZZ_COLLECT=1  do not stop at (and shrink) the first failure of a family: collect every failing request
//   TUILE_FUZZ_REPORT=F   write a JSON summary (requests sent, duration, distinct failures) to F
import { writeFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, TOKEN, type TuileProcess } from '../helpers/tuile.js';

const RUNS = Math.max(1, Number(process.env.TUILE_FUZZ_RUNS) || 300);
const SEED = Number(process.env.TUILE_FUZZ_SEED ?? 42);
const COLLECT = process.env.TUILE_FUZZ_COLLECT === '1';
const REPORT = process.env.TUILE_FUZZ_REPORT;
/** per request; a request that gets no answer in this time is a failure */
const REQUEST_TIMEOUT_MS = 15_000;
const IT_TIMEOUT_MS = 120_000 + RUNS * 150;
const ENV = { TUILE_WORKERS: '1', TUILE_UPLOAD_MAX_BYTES: '100000', TUILE_CACHE_MB: '16' };
const UPLOAD_MAX = 100_000;
/** a marker that must never come back unescaped in an HTML or XML document */
const CANARY = '<x-fuzz>';

// ---------------------------------------------------------------------------------------------------
// Requests, sending and recording

interface Req {
  family: string;
  method: string;
  /** request target as sent */
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** send the body in two writes (chunked transfer encoding, no Content-Length) */
  chunked?: boolean;
  /** raw socket requests: the bytes sent (latin1), what each pipelined request asked, whether an answer is due */
  raw?: string;
  asked?: { method: string; target: string }[];
  answerDue?: boolean;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

interface Res extends Answer {
  error?: string;
  /** raw socket requests: every answer read */
  answers?: Answer[];
}

interface Failure {
  family: string;
  request: string;
  status: number;
  contentType: string;
  body: string;
  problem: string;
  serverLog: string;
}

function short(s: string, n = 300): string {
  return s.length <= n ? s : `${s.slice(0, n)}…(${s.length} chars)`;
}

function describeReq(r: Req): string {
  if (r.raw !== undefined) return `RAW ${JSON.stringify(short(r.raw, 700))}`;
  const h = Object.entries(r.headers)
    .map(([k, v]) => `${k}: ${short(v, 160)}`)
    .join(' | ');
  const body = r.body === undefined ? '' : ` body(${r.body.length} chars${r.chunked ? ', chunked' : ''})=${JSON.stringify(short(r.body, 400))}`;
  return `${r.method} ${short(r.path, 500)}${h ? ` [${h}]` : ''}${body}`;
}

/**
 * A request as Node's client sends it (methods in upper case, nothing outside \x21-\xff in the target),
 * printed by fast-check in counterexamples as describeReq writes it.
 */
function printable(r: Req): Req {
  if (r.raw === undefined) {
    r.method = r.method.toUpperCase();
    r.path = r.path.replace(/[^\x21-\xff]/gu, (c) => pct(c));
  }
  return Object.assign(r, { [fc.toStringMethod]: () => describeReq(r) });
}

/** Node's default limit on the request line and headers (--max-http-header-size) */
const MAX_HEAD = 16 * 1024;
const headSize = (r: Req) => r.method.length + r.path.length + Object.entries(r.headers).reduce((n, [k, v]) => n + k.length + v.length + 4, 0);

const data = tempDir('tuile-fuzz-');
let t: TuileProcess;
let sent = 0;
const perFamily: Record<string, number> = {};
/** statuses seen per family (0: no answer), to tell a generator that only ever hits one branch */
const statuses: Record<string, Record<number, number>> = {};
const failures: Failure[] = [];
const crashes: { after: string[]; exit: string; output: string }[] = [];
const recent: Req[] = [];
const started = Date.now();

const alive = () => t.proc.exitCode === null && t.proc.signalCode === null;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A dead server is written down (with the requests just before) and started again on the same data. */
async function ensureServer(): Promise<void> {
  if (alive()) return;
  crashes.push({ after: recent.map(describeReq), exit: String(t.proc.exitCode ?? t.proc.signalCode), output: t.output().slice(-6000) });
  t = await startTuile(data.path, ENV);
}

function flat(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

function decode(body: Buffer, encoding: string | undefined): Buffer {
  if (!encoding || body.length === 0) return body;
  const e = encoding.trim().toLowerCase();
  if (e === 'gzip' || e === 'x-gzip') return gunzipSync(body);
  if (e === 'deflate') return inflateSync(body);
  if (e === 'br') return brotliDecompressSync(body);
  return body;
}

function send(r: Req): Promise<Res> {
  const u = new URL(t.base);
  return new Promise((resolve) => {
    let done = false;
    const finish = (res: Res) => {
      if (!done) {
        done = true;
        resolve(res);
      }
    };
    let req: ClientRequest;
    try {
      const hasHost = Object.keys(r.headers).some((k) => k.toLowerCase() === 'host');
      // Node's client frames a body of GET, DELETE, OPTIONS... with neither header unless told
      const framing: Record<string, string> =
        r.body === undefined ? {} : r.chunked ? { 'Transfer-Encoding': 'chunked' } : { 'Content-Length': String(Buffer.byteLength(r.body, 'utf8')) };
      req = httpRequest(
        { host: u.hostname, port: Number(u.port), method: r.method, path: r.path, headers: { ...r.headers, ...framing }, agent: false, setHost: !hasHost },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const headers = flat(res.headers);
            try {
              finish({ status: res.statusCode ?? 0, headers, body: decode(Buffer.concat(chunks), headers['content-encoding']) });
            } catch (err) {
              finish({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks), error: `undecodable ${headers['content-encoding']} body: ${(err as Error).message}` });
            }
          });
          res.on('error', (err) => finish({ status: res.statusCode ?? 0, headers: flat(res.headers), body: Buffer.concat(chunks), error: `response: ${err.message}` }));
        },
      );
    } catch (err) {
      finish({ status: -1, headers: {}, body: Buffer.alloc(0), error: `node's client refuses to send it: ${(err as Error).message}` });
      return;
    }
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (err) => finish({ status: 0, headers: {}, body: Buffer.alloc(0), error: err.message }));
    if (r.body === undefined) req.end();
    else {
      const b = Buffer.from(r.body, 'utf8');
      if (r.chunked) {
        req.write(b.subarray(0, b.length >> 1));
        req.end(b.subarray(b.length >> 1));
      } else req.end(b);
    }
  });
}

/** The answers in a raw byte stream (HTTP/1.x), interim 1xx answers left out. */
function parseAnswers(buf: Buffer, asked: { method: string }[]): Answer[] {
  const out: Answer[] = [];
  let off = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) break;
    const [statusLine, ...lines] = buf.subarray(off, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/\d\.\d (\d{3})/.exec(statusLine);
    if (!m) break;
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const c = l.indexOf(':');
      if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
    }
    let p = end + 4;
    let body: Buffer = Buffer.alloc(0);
    if (status >= 100 && status < 200) {
      off = p;
      continue;
    }
    const head = asked[out.length]?.method === 'HEAD';
    if (head || status === 204 || status === 304) {
      // no body
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      for (;;) {
        const le = buf.indexOf('\r\n', p);
        if (le < 0) break;
        const n = parseInt(buf.subarray(p, le).toString('latin1'), 16);
        p = le + 2;
        if (!(n > 0)) {
          p = Math.min(buf.length, p + 2);
          break;
        }
        parts.push(buf.subarray(p, p + n));
        p += n + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      body = buf.subarray(p);
      p = buf.length;
    }
    try {
      body = decode(body, headers['content-encoding']);
    } catch {
      // left encoded: the checks then report it
    }
    out.push({ status, headers, body });
    off = p;
  }
  return out;
}

/**
 * Raw socket requests. One that is complete (`answerDue`) asks Connection: close and is read until the
 * server closes; an incomplete one is followed by our FIN, and may be answered or just closed.
 */
function sendRaw(r: Req): Promise<Res> {
  const u = new URL(t.base);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const sock = connect(Number(u.port), u.hostname);
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      sock.destroy();
      const answers = parseAnswers(Buffer.concat(chunks), r.asked ?? []);
      const first = answers[0];
      resolve({ status: first?.status ?? 0, headers: first?.headers ?? {}, body: first?.body ?? Buffer.alloc(0), answers, error: first ? undefined : (error ?? 'connection closed without an answer') });
    };
    sock.setTimeout(REQUEST_TIMEOUT_MS / 3, () => finish(`no answer within ${REQUEST_TIMEOUT_MS / 3} ms`));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => finish());
    sock.on('close', () => finish());
    sock.on('error', (err) => finish(err.message));
    sock.on('connect', () => {
      sock.write(Buffer.from(r.raw!, 'latin1'));
      if (!r.answerDue) sock.end();
    });
  });
}

// ---------------------------------------------------------------------------------------------------
// What every answer must look like

const OWS_NS = 'http://www.opengis.net/ows/1.1';
/** OGC 07-057r7 tables 28 and 30, OWS Common 1.1 table 25, as DESIGN 6 fixes them */
const OWS_STATUS: Record<string, number> = {
  MissingParameterValue: 400,
  InvalidParameterValue: 400,
  TileOutOfRange: 400,
  PointIJOutOfRange: 400,
  OperationNotSupported: 501,
  VersionNegotiationFailed: 400,
  InvalidUpdateSequence: 400,
  NoApplicableCode: 500,
};
/** statuses Node's HTTP parser or the Hono adapter answer, without a body, before the application runs */
const HTTP_LAYER = new Set([400, 408, 413, 414, 417, 431, 505]);
const xml = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false, parseAttributeValue: false });

/** Hono's getPath (up to `?` or `#`): percent-decoding with decodeURI (so %2F stays), %25 kept, bad sequences left as they are. */
function honoDecode(path: string): string {
  if (!path.includes('%')) return path;
  const p = path.replace(/%25/g, '%2525');
  try {
    return decodeURI(p);
  } catch {
    return p.replace(/(?:%[0-9A-Fa-f]{2})+/g, (m) => {
      try {
        return decodeURI(m);
      } catch {
        return m;
      }
    });
  }
}

/** The path the application routes a request target on (URL normalisation, decoding, strict: false). */
function routePath(target: string): string | undefined {
  let href: string;
  try {
    const url = new URL(target, 'http://h');
    href = url.href.slice(url.origin.length);
  } catch {
    return undefined;
  }
  let p = honoDecode(href.split(/[?#]/)[0]);
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

type Form = 'api' | 'ows' | 'tms' | 'json' | 'html' | 'text';

/** The error form a request must get, from the route it reaches. */
function formOf(method: string, target: string): Form {
  const p = routePath(target) ?? '/';
  if (p === '/api' || p.startsWith('/api/')) return 'api';
  if (method !== 'GET' && method !== 'HEAD') return 'json';
  const s = p.split('/').slice(1);
  const full = (n: number) => s.length === n && s.every((x) => x !== '');
  if (s[0] === 'wmts') {
    if (s.length === 1) return 'ows';
    if (s[1] === '1.0.0' && (full(3) ? s[2] === 'WMTSCapabilities.xml' : full(8) || full(10))) return 'ows';
    return 'json';
  }
  if (s[0] === 'tms' && s[1] === '1.0.0' && (full(3) || full(6))) return 'tms';
  if (s[0] === 'viewer') {
    if (full(2)) return 'html';
    if (full(3) && s[1] === 'assets') return 'text';
  }
  return 'json';
}

function checkAnswer(method: string, target: string, a: Answer, askedText: string): string | null {
  const type = (a.headers['content-type'] ?? '').toLowerCase();
  const text = a.body.toString('utf8');
  const form = formOf(method, target);
  const wmts = (routePath(target) ?? '').startsWith('/wmts');
  if (a.status >= 500 && !(a.status === 501 && wmts && form === 'ows')) return `status ${a.status}`;
  if (a.status < 100) return `status ${a.status}`;
  // rejected by Node's parser or the adapter before any route: no body, no type
  if (HTTP_LAYER.has(a.status) && !type && a.body.length === 0) return null;
  const head = method === 'HEAD';
  if (!head && a.body.length > 0) {
    if (type.includes('json')) {
      try {
        JSON.parse(text);
      } catch (err) {
        return `${type} body is not JSON: ${(err as Error).message}`;
      }
    }
    if (type.includes('xml')) {
      const v = XMLValidator.validate(text);
      if (v !== true) return `${type} body is not well-formed XML: ${v.err.msg} (line ${v.err.line})`;
    }
    // it comes from the request or from the spare layer's metadata, and must be escaped wherever it lands
    if ((type.includes('html') || type.includes('xml')) && text.includes(CANARY)) {
      return `${CANARY} (from ${askedText.includes(CANARY) ? 'the request' : "the spare layer's title, abstract or keywords"}) is written unescaped into a ${type} document`;
    }
  }
  if (a.status < 400 && !(a.status === 501 && form === 'ows')) return null;
  if (head) return null;
  switch (form) {
    case 'api':
    case 'json': {
      if (!type.includes('application/json')) return `error in ${type || 'no content type'}, not JSON {error, error_description}`;
      const j = JSON.parse(text);
      if (!j || typeof j !== 'object' || Array.isArray(j) || typeof j.error !== 'string' || !j.error) return 'JSON error without a string `error`';
      if (!Array.isArray(j.error_description) || !j.error_description.every((d: unknown) => typeof d === 'string')) return 'JSON error without an `error_description` array of strings';
      if (form === 'api' && a.status === 401 && !a.headers['www-authenticate']) return '401 without WWW-Authenticate';
      return null;
    }
    case 'ows': {
      if (!type.includes('xml')) return `WMTS error in ${type || 'no content type'}, not an ows:ExceptionReport`;
      const doc = xml.parse(text) as Record<string, any>;
      const rootName = Object.keys(doc).find((k) => k !== '?xml') ?? '';
      const m = /^(?:(\w+):)?ExceptionReport$/.exec(rootName);
      if (!m) return `WMTS error whose root is <${rootName}>, not ows:ExceptionReport`;
      const root = doc[rootName];
      const ns = m[1] ? root[`@xmlns:${m[1]}`] : root['@xmlns'];
      if (ns !== OWS_NS) return `ExceptionReport in namespace ${ns}, not ${OWS_NS}`;
      const exs = root[m[1] ? `${m[1]}:Exception` : 'Exception'];
      const ex = Array.isArray(exs) ? exs[0] : exs;
      const code = ex?.['@exceptionCode'];
      if (!code) return 'ExceptionReport without an exceptionCode';
      if (!(code in OWS_STATUS)) return `unknown exceptionCode ${code}`;
      if (OWS_STATUS[code] !== a.status) return `exceptionCode ${code} answered with status ${a.status}, not ${OWS_STATUS[code]}`;
      if ((code === 'MissingParameterValue' || code === 'InvalidParameterValue') && !ex['@locator']) return `${code} without a locator`;
      return null;
    }
    case 'tms': {
      if (!type.includes('xml')) return `TMS error in ${type || 'no content type'}, not a TileMapServerError`;
      const doc = xml.parse(text) as Record<string, any>;
      if (!doc.TileMapServerError || typeof doc.TileMapServerError.Message !== 'string') return 'TMS error without <TileMapServerError><Message>';
      return null;
    }
    case 'html':
      return type.startsWith('text/html') ? null : `viewer error in ${type || 'no content type'}, not HTML`;
    case 'text':
      return type.startsWith('text/') ? null : `asset error in ${type || 'no content type'}, not text`;
  }
}

function check(r: Req, res: Res): string | null {
  if (res.status === -1) return res.error!;
  if (r.raw !== undefined) {
    const answers = res.answers ?? [];
    if (answers.length === 0) return r.answerDue ? `no answer: ${res.error}` : null;
    for (let i = 0; i < answers.length; i++) {
      const asked = r.asked?.[i];
      const problem = asked ? checkAnswer(asked.method, asked.target, answers[i], r.raw) : answers[i].status >= 500 ? `status ${answers[i].status}` : null;
      if (problem) return answers.length > 1 ? `answer ${i + 1}: ${problem}` : problem;
    }
    return null;
  }
  if (res.status === 0) {
    // Node answers 431 to a head over its limit and closes at once: a client still writing sees a reset
    if (headSize(r) > MAX_HEAD && /ECONNRESET|EPIPE/.test(res.error ?? '')) return null;
    // the same for a request target with raw non-ASCII bytes (Node's client sends them unescaped):
    // Node's parser answers 400 and closes while the body is still coming
    if (/[^\x21-\x7e]/.test(r.path) && /ECONNRESET|EPIPE/.test(res.error ?? '')) return null;
    return `no answer: ${res.error}`;
  }
  if (res.error) return res.error;
  return checkAnswer(r.method, r.path, res, describeReq(r));
}

function failureText(f: Failure): string {
  return [
    `[${f.family}] ${f.request}`,
    `  -> ${f.status} ${f.contentType} ${JSON.stringify(f.body)}`,
    `  problem: ${f.problem}`,
    ...(f.serverLog ? [`  server log: ${f.serverLog}`] : []),
  ].join('\n');
}

/** The property of every family: send, check, keep the server running. */
async function exercise(r: Req): Promise<void> {
  await ensureServer();
  const logFrom = t.output().length;
  const res = r.raw !== undefined ? await sendRaw(r) : await send(r);
  sent++;
  perFamily[r.family] = (perFamily[r.family] ?? 0) + 1;
  for (const a of res.answers ?? [res]) (statuses[r.family] ??= {})[a.status] = (statuses[r.family][a.status] ?? 0) + 1;
  recent.push(r);
  if (recent.length > 5) recent.shift();
  let problem = check(r, res);
  // a crash shows as a closed connection, or a moment after the answer
  await (res.status <= 0 || (r.raw !== undefined && !res.answers?.length) ? sleep(200) : new Promise((ok) => setImmediate(ok)));
  if (!alive()) problem = `the server process exited (${t.proc.exitCode ?? t.proc.signalCode})${problem ? `; ${problem}` : ''}`;
  if (!problem) return;
  const f: Failure = {
    family: r.family,
    request: describeReq(r),
    status: res.status,
    contentType: res.headers['content-type'] ?? '',
    body: short(res.body.toString('utf8'), 600),
    problem,
    serverLog: short(t.output().slice(logFrom).trim(), 3000),
  };
  failures.push(f);
  if (!COLLECT) throw new Error(failureText(f));
}

// ---------------------------------------------------------------------------------------------------
// Generators

/** Percent-encodes all but unreserved characters, as UTF-8 (lone surrogates become U+FFFD). */
function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** As typed: printable ASCII and latin1 stay raw (`%`, `/`, `?`, `#`, `..` included); the rest is encoded. */
function rawish(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    out += (c >= 0x21 && c <= 0x7e) || (c >= 0xa0 && c <= 0xff) ? ch : pct(ch);
  }
  return out;
}

/** A header value Node's client sends as is. */
function headerSafe(s: string): string {
  return s.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?');
}

const WEIRD = [
  '', ' ', '.', '..', '...', '%', '%%', '%zz', '%0', '%00', '%2e', '%2e%2e', '%2F', '..%2F..%2F..%2Fetc%2Fpasswd', '%252e%252e',
  '%C0%AF', '%E0%A4%A', '%FF', '%u0041', '\\', '..\\..\\', ';', ',', "'", '"', CANARY, `"'>${CANARY}`, ']]>', '&amp;', '&', '=', '+',
  '*', '~', '$', '{z}', '${x}', '__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', 'null', 'undefined',
  'true', 'NaN', 'Infinity', '-Infinity', '-1', '-0', '0', '00', '007', '1e3', '1E400', '0x1F', '0b1', '1.5', '1,5', ' 1', '1 ', '+1',
  '1_000', '4294967296', '9007199254740993', '99999999999999999999999999', '١٢', '٣', '①', 'é', 'ﬁ', '😀', '\u202e', '\u200b', '\ufeff',
  '\ud800', 'A'.repeat(300),
];

const longText = fc
  .tuple(fc.constantFrom('a', 'é', '%', '0', '9', '/', '-', '😀'), fc.integer({ min: 1000, max: 20000 }))
  .map(([c, n]) => c.repeat(Math.ceil(n / c.length)));

const text: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...WEIRD) },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.integer().map(String) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String) },
  { weight: 1, arbitrary: fc.double().map(String) },
  { weight: 1, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: longText },
);

/** Text as it goes into a URL: encoded, typed raw, or with spaces as `+`. */
const inUrl = (a: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.tuple(a, fc.constantFrom('enc', 'enc', 'raw', 'raw', 'plus')).map(([s, how]) => (how === 'enc' ? pct(s) : how === 'raw' ? rawish(s) : pct(s).replace(/%20/g, '+')));

/** A path segment: mostly a meaningful value, otherwise garbage. */
const seg = (valid: string[], weight = 3): fc.Arbitrary<string> => fc.oneof({ weight, arbitrary: fc.constantFrom(...valid) }, { weight: 2, arbitrary: inUrl(text) });

const PATH_EDITS = ['none', 'none', 'none', 'none', 'none', 'none', 'trailing', 'double', 'extra', 'drop', 'dot', 'dotdot', 'semicolon', 'upper', 'encoded', 'private'] as const;

/** Joins segments into a path, sometimes bent: trailing or double slash, a segment more or less, dots. */
function path(prefix: string, segs: fc.Arbitrary<string>[]): fc.Arbitrary<string> {
  return fc.tuple(fc.tuple(...segs), fc.constantFrom(...PATH_EDITS), inUrl(text), fc.nat()).map(([parts, edit, extra, n]) => {
    const p = [...parts];
    const i = p.length ? n % p.length : 0;
    switch (edit) {
      case 'extra':
        p.splice(i, 0, extra);
        break;
      case 'drop':
        p.splice(i, 1);
        break;
      case 'dot':
        p.splice(i, 0, '.');
        break;
      case 'dotdot':
        p.splice(i, 0, extra, n % 2 ? '..' : '%2e%2e');
        break;
      case 'semicolon':
        if (p.length) p[i] += ';jsessionid=1';
        break;
      case 'upper':
        if (p.length) p[i] = p[i].toUpperCase();
        break;
      case 'encoded':
        if (p.length) p[i] = pct(p[i]).replace(/[a-z]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
        break;
    }
    let out = prefix + (p.length ? `/${p.join('/')}` : '');
    if (edit === 'trailing') out += '/';
    if (edit === 'double') out = out.replace(/\/(?=[^/]*$)/, '//');
    return out || '/';
  });
}

/** A query string: none, random pairs, or junk. */
function query(pairs: fc.Arbitrary<[string, string][]>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant('') },
    { weight: 3, arbitrary: pairs.map((ps) => (ps.length ? `?${ps.map(([k, v]) => `${k}=${v}`).join('&')}` : '')) },
    { weight: 1, arbitrary: fc.constantFrom('?', '?&&', '?=', '?a', '?%', '?%zz=%zz', '?a=1&a=2&a', '?;', '?#', `?${'x'.repeat(12000)}`, '?f=json#frag', '??') },
  );
}

const anyPairs = fc.array(fc.tuple(inUrl(text), inUrl(text)), { maxLength: 4 });

const headerValue = fc
  .oneof(
    { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.constantFrom(...WEIRD) },
    { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20000 }).map((n) => 'h'.repeat(n)) },
  )
  .map(headerSafe);

/** Headers any client may send, mostly none. */
const commonHeaders: fc.Arbitrary<Record<string, string>> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({}) },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        'If-None-Match': fc.oneof(fc.constantFrom('*', '"x"', 'W/"x"', '', ',,,', '"blank-png-4-0"', '"a", *'), headerValue),
        'Accept-Encoding': fc.constantFrom('gzip', 'deflate', 'br', 'gzip, deflate, br', 'identity', '*', 'gzip;q=0', 'x-garbage', 'zstd', ''),
        Accept: fc.oneof(fc.constantFrom('*/*', 'application/json', 'text/html', 'image/webp', 'application/xml', ''), headerValue),
        Origin: fc.oneof(fc.constantFrom('https://example.com', 'null', ''), headerValue),
        'Access-Control-Request-Method': fc.constantFrom('GET', 'POST', 'DELETE', 'FOO', ''),
        'X-Forwarded-Host': fc.oneof(fc.constantFrom('example.com', 'a b', CANARY, `"'>${CANARY}`, 'x/y?z#w', ''), headerValue),
        'X-Forwarded-Proto': fc.oneof(fc.constantFrom('https', 'http', 'javascript', 'https, http', CANARY, ''), headerValue),
        Host: fc.constantFrom('evil.example', 'EXAMPLE.com', 'a b', '[::1]', '[::1', '127.0.0.1:99999', 'x:-1', '', 'localhost:80', CANARY, 'h/p', 'a@b', 'ho%73t', 'é.example'),
        Range: fc.constantFrom('bytes=0-10', 'bytes=-1', 'bytes=10-0', 'bytes=0-', 'lines=1-2', 'bytes=' + '0-1,'.repeat(200)),
        Cookie: headerValue,
        'X-Fuzz': headerValue,
      },
      { requiredKeys: [] },
    ),
  },
);

const METHODS_READ = fc.oneof(
  { weight: 12, arbitrary: fc.constant('GET') },
  { weight: 2, arbitrary: fc.constant('HEAD') },
  { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'get', 'M-SEARCH') },
);

interface Tile {
  z: number;
  row: number;
  col: number;
}

interface Ids {
  d: string;
  endpoint: string;
  upload: string;
  openUpload: string;
  execution: string;
  storedData: string;
  configuration: string;
  offering: string;
  spareConfiguration: string;
  spareOffering: string;
  unpublishedConfiguration: string;
  check: string;
  processing: string;
  tiles: Tile[];
  ref: Tile;
}

const LAYER = 'relief';

function layerSeg(): fc.Arbitrary<string> {
  return fc.oneof({ weight: 5, arbitrary: fc.constantFrom(LAYER, LAYER, LAYER, 'spare', 'nope', 'Relief', `${LAYER}%00`) }, { weight: 2, arbitrary: inUrl(text) });
}

/** Tile indexes: in the layer's limits, near them, negative, huge, not numbers. */
function indexText(valid: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...valid) },
    { weight: 2, arbitrary: fc.integer({ min: -2, max: 5000 }).map(String) },
    { weight: 1, arbitrary: fc.constantFrom('-1', '999999999', '1000000000', '4294967296', '99999999999999999999', '1e2', '0x10', '07', ' 1', '1.0', '١', '', 'NaN', '-0') },
    { weight: 1, arbitrary: inUrl(text) },
  );
}

function makeArbs(ids: Ids) {
  const tiles = fc.constantFrom(...ids.tiles);
  const zs = [...new Set(ids.tiles.map((x) => String(x.z)))];
  const rows = [...new Set(ids.tiles.map((x) => String(x.row)))];
  const cols = [...new Set(ids.tiles.map((x) => String(x.col)))];
  // Node's client sends methods in upper case
  const req = (family: string) => (r: Omit<Req, 'family'>) => printable({ family, ...r });

  // -- WMTS KVP: the canonical request, then 0 to 4 edits (drop, set, duplicate, add, case) -----------------
  const KVP_VALUES: Record<string, string[]> = {
    SERVICE: ['WMTS', 'wmts', 'WMS', 'OGC:WMTS', ''],
    REQUEST: ['GetTile', 'GetFeatureInfo', 'GetCapabilities', 'getcapabilities', 'GETTILE', 'GetLegendGraphic', 'DescribeLayer', 'GetMap', ''],
    VERSION: ['1.0.0', '1.1.0', '2.0.0', '1.0', ''],
    ACCEPTVERSIONS: ['1.0.0', '2.0.0,1.0.0', '9.9.9', ',', ''],
    SECTIONS: ['All', 'Contents', 'ServiceIdentification,Contents', 'Nope', ',', ''],
    LAYER: [LAYER, 'spare', 'nope', 'RELIEF', ''],
    STYLE: ['normal', 'default', 'Normal', ''],
    FORMAT: ['image/png', 'image/jpeg', 'image/webp', 'image/png; mode=8bit', 'png', ''],
    TILEMATRIXSET: ['PM', 'WebMercatorQuad', 'pm', 'EPSG:3857', ''],
    TILEMATRIX: [...zs, '0', '21', '22', '-1', '06', 'PM:6', ''],
    TILEROW: rows,
    TILECOL: cols,
    I: ['0', '128', '255', '256', '-1', '1.5', ''],
    J: ['0', '128', '255', '256', '-1', '1.5', ''],
    INFOFORMAT: ['text/plain', 'application/json', 'text/html', 'text/xml', 'application/geojson', ''],
  };
  const keyNames = Object.keys(KVP_VALUES);
  const kvpValue = (key: string): fc.Arbitrary<string> => {
    const base = KVP_VALUES[key] ?? [''];
    if (key === 'TILEROW' || key === 'TILECOL') return indexText(base);
    return fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...base) }, { weight: 2, arbitrary: text });
  };
  const edit = fc.oneof(
    fc.record({ op: fc.constant('drop' as const), key: fc.constantFrom(...keyNames) }),
    fc.constantFrom(...keyNames).chain((key) => fc.record({ op: fc.constantFrom('set' as const, 'dup' as const), key: fc.constant(key), value: kvpValue(key) })),
    fc.record({ op: fc.constant('add' as const), key: text, value: text }),
    fc.record({ op: fc.constant('case' as const), key: fc.constantFrom(...keyNames), variant: fc.constantFrom('lower', 'mixed', 'space') }),
    fc.record({ op: fc.constant('pad' as const), n: fc.integer({ min: 10_000, max: 20_000 }) }),
  );
  const wmtsKvp = fc
    .record({
      kind: fc.constantFrom('GetTile', 'GetTile', 'GetFeatureInfo', 'GetCapabilities'),
      tile: tiles,
      edits: fc.array(edit, { maxLength: 4 }),
      encode: fc.constantFrom('enc', 'enc', 'raw', 'plus'),
      prefix: fc.constantFrom('/wmts', '/wmts', '/wmts', '/wmts/', '/WMTS', '/wmts/1.0.0', '/wmts//'),
      junk: fc.constantFrom('', '', '', '&', '&&', '&=', '&X', '&%', '&;'),
      method: METHODS_READ,
      headers: commonHeaders,
    })
    .map(({ kind, tile, edits, encode, prefix, junk, method, headers }) => {
      const params: [string, string][] = [
        ['SERVICE', 'WMTS'],
        ['REQUEST', kind],
      ];
      if (kind !== 'GetCapabilities') {
        params.push(['VERSION', '1.0.0'], ['LAYER', LAYER], ['STYLE', 'normal']);
        if (kind === 'GetTile') params.push(['FORMAT', 'image/png']);
        params.push(['TILEMATRIXSET', 'PM'], ['TILEMATRIX', String(tile.z)], ['TILEROW', String(tile.row)], ['TILECOL', String(tile.col)]);
        if (kind === 'GetFeatureInfo') params.push(['I', '10'], ['J', '20'], ['INFOFORMAT', 'application/json']);
      }
      for (const e of edits) {
        const at = params.findIndex(([k]) => k.toUpperCase() === ('key' in e && typeof e.key === 'string' ? e.key.toUpperCase() : ''));
        if (e.op === 'drop') {
          if (at >= 0) params.splice(at, 1);
        } else if (e.op === 'set') {
          if (at >= 0) params[at] = [params[at][0], e.value];
          else params.push([e.key, e.value]);
        } else if (e.op === 'dup') {
          params.splice(at >= 0 ? at : params.length, 0, [e.key, e.value]);
        } else if (e.op === 'add') params.push([e.key, e.value]);
        else if (e.op === 'case') {
          if (at >= 0) {
            const k = params[at][0];
            params[at][0] = e.variant === 'lower' ? k.toLowerCase() : e.variant === 'mixed' ? k[0] + k.slice(1).toLowerCase() : ` ${k}`;
          }
        } else if (e.op === 'pad') params.push(['PAD', 'p'.repeat(e.n)]);
      }
      const enc = (s: string) => (encode === 'enc' ? pct(s) : encode === 'raw' ? rawish(s) : pct(s).replace(/%20/g, '+'));
      const qs = params.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&') + junk;
      return req('wmts-kvp')({ method, path: `${prefix}?${qs}`, headers });
    });

  // -- WMTS RESTful: tiles, FeatureInfo and the capabilities document -------------------------------------
  const restTile = fc
    .record({
      tile: tiles,
      fi: fc.boolean(),
      layer: layerSeg(),
      style: seg(['normal', 'default']),
      tms: seg(['PM', 'WebMercatorQuad']),
      ext: fc.constantFrom('png', 'png', 'jpg', 'jpeg', 'webp', 'PNG', 'txt', 'json', 'html', 'xml', '', 'png.png', 'tif', '%70ng'),
      z: fc.option(indexText(zs), { nil: undefined }),
      row: fc.option(indexText(rows), { nil: undefined }),
      col: fc.option(indexText(cols), { nil: undefined }),
      ij: fc.tuple(indexText(['0', '128', '255']), indexText(['0', '255'])),
      edit: fc.constantFrom(...PATH_EDITS),
      extra: inUrl(text),
      method: METHODS_READ,
      headers: commonHeaders,
      q: query(anyPairs),
    })
    .map((v) => {
      const z = v.z ?? String(v.tile.z);
      const row = v.row ?? String(v.tile.row);
      const col = v.col ?? String(v.tile.col);
      const parts = v.fi ? [v.layer, v.style, v.tms, z, row, col, v.ij[1], `${v.ij[0]}.${v.ext}`] : [v.layer, v.style, v.tms, z, row, `${col}.${v.ext}`];
      if (v.edit === 'extra') parts.push(v.extra);
      if (v.edit === 'drop') parts.pop();
      if (v.edit === 'dotdot') parts.splice(2, 0, v.extra, '..');
      let p = `/wmts/1.0.0/${parts.join('/')}`;
      if (v.edit === 'trailing') p += '/';
      if (v.edit === 'double') p = p.replace('/1.0.0/', '/1.0.0//');
      return req('wmts-rest')({ method: v.method, path: p + v.q, headers: v.headers });
    });
  const restCaps = fc
    .record({ p: fc.constantFrom('/wmts/1.0.0/WMTSCapabilities.xml', '/wmts/1.0.0/wmtscapabilities.xml', '/wmts/1.0.0/', '/wmts/1.0.0/WMTSCapabilities.xml/x', '/wmts/2.0.0/WMTSCapabilities.xml'), q: query(anyPairs), method: METHODS_READ, headers: commonHeaders })
    .map((v) => req('wmts-rest')({ method: v.method, path: v.p + v.q, headers: v.headers }));
  const wmtsRest = fc.oneof({ weight: 5, arbitrary: restTile }, { weight: 1, arbitrary: restCaps });

  // -- TMS: service documents, TileMap, tiles with rows from the bottom -----------------------------------
  const tmsArb = fc
    .record({
      kind: fc.constantFrom('tile', 'tile', 'tile', 'map', 'service'),
      tile: tiles,
      layer: layerSeg(),
      z: fc.option(indexText(zs), { nil: undefined }),
      x: fc.option(indexText(cols), { nil: undefined }),
      y: fc.option(indexText(['0', '1', '63']), { nil: undefined }),
      ext: fc.constantFrom('png', 'png', 'jpg', 'jpeg', 'webp', '', 'PNG', 'png.png', '%2e%2e'),
      edit: fc.constantFrom(...PATH_EDITS),
      extra: inUrl(text),
      method: METHODS_READ,
      headers: commonHeaders,
      q: query(anyPairs),
      service: fc.constantFrom('/tms', '/tms/', '/tms/1.0.0', '/tms/1.0.0/', '/tms/1.0.1/', '/tms//1.0.0'),
    })
    .map((v) => {
      let p: string;
      if (v.kind === 'service') p = v.service;
      else {
        const flipped = String((1 << v.tile.z) - 1 - v.tile.row);
        const parts = v.kind === 'map' ? [v.layer] : [v.layer, v.z ?? String(v.tile.z), v.x ?? String(v.tile.col), `${v.y ?? flipped}.${v.ext}`];
        if (v.edit === 'extra') parts.push(v.extra);
        if (v.edit === 'drop') parts.pop();
        if (v.edit === 'dotdot') parts.splice(1, 0, v.extra, '..');
        p = `/tms/1.0.0/${parts.join('/')}`;
        if (v.edit === 'trailing') p += '/';
        if (v.edit === 'double') p = p.replace(`/${parts[0]}/`, `/${parts[0]}//`);
      }
      return req('tms')({ method: v.method, path: p + v.q, headers: v.headers });
    });

  // -- XYZ ---------------------------------------------------------------------------------------------------
  const xyzArb = fc
    .record({
      tile: tiles,
      layer: layerSeg(),
      z: fc.option(indexText(zs), { nil: undefined }),
      x: fc.option(indexText(cols), { nil: undefined }),
      y: fc.option(indexText(rows), { nil: undefined }),
      ext: fc.constantFrom('png', 'png', 'png', 'jpg', 'jpeg', 'webp', '', 'PNG', 'png.png', 'png%00', 'png?', 'pbf'),
      edit: fc.constantFrom(...PATH_EDITS),
      extra: inUrl(text),
      method: METHODS_READ,
      headers: commonHeaders,
      q: query(anyPairs),
    })
    .map((v) => {
      const parts = [v.layer, v.z ?? String(v.tile.z), v.x ?? String(v.tile.col), `${v.y ?? String(v.tile.row)}.${v.ext}`];
      if (v.edit === 'extra') parts.push(v.extra);
      if (v.edit === 'drop') parts.pop();
      if (v.edit === 'dotdot') parts.splice(1, 0, v.extra, '..');
      if (v.edit === 'upper') parts[0] = parts[0].toUpperCase();
      let p = `/tiles/${parts.join('/')}`;
      if (v.edit === 'trailing') p += '/';
      if (v.edit === 'double') p = p.replace('/tiles/', '/tiles//');
      if (v.edit === 'private') p = `/private${p}`;
      return req('xyz')({ method: v.method, path: p + v.q, headers: v.headers });
    });

  // -- OGC API - Tiles ---------------------------------------------------------------------------------------
  const fValues = fc.oneof(fc.constantFrom('json', 'html', 'png', 'jpeg', 'jpg', 'webp', 'image/png', 'JSON', 'mvt', '', '__proto__', 'constructor'), inUrl(text));
  const ogcQuery = fc.oneof(
    { weight: 2, arbitrary: query(anyPairs) },
    { weight: 2, arbitrary: fc.array(fValues, { minLength: 1, maxLength: 2 }).map((fs) => `?${fs.map((f) => `f=${f}`).join('&')}`) },
  );
  const ogcArb = fc
    .record({
      kind: fc.constantFrom('landing', 'conformance', 'sets', 'set', 'collections', 'collection', 'tilesets', 'tileset', 'tile', 'tile', 'tile'),
      tile: tiles,
      layer: layerSeg(),
      tms: seg(['WebMercatorQuad', 'WebMercatorQuad', 'PM', 'WorldCRS84Quad', 'webmercatorquad']),
      z: fc.option(indexText(zs), { nil: undefined }),
      row: fc.option(indexText(rows), { nil: undefined }),
      col: fc.option(indexText(cols), { nil: undefined }),
      edit: fc.constantFrom(...PATH_EDITS),
      extra: inUrl(text),
      method: METHODS_READ,
      headers: commonHeaders,
      q: ogcQuery,
    })
    .map((v) => {
      const c = ['collections', v.layer];
      const parts: Record<string, string[]> = {
        landing: [],
        conformance: ['conformance'],
        sets: ['tileMatrixSets'],
        set: ['tileMatrixSets', v.tms],
        collections: ['collections'],
        collection: c,
        tilesets: [...c, 'map', 'tiles'],
        tileset: [...c, 'map', 'tiles', v.tms],
        tile: [...c, 'map', 'tiles', v.tms, v.z ?? String(v.tile.z), v.row ?? String(v.tile.row), v.col ?? String(v.tile.col)],
      };
      const ps = [...parts[v.kind]];
      if (v.edit === 'extra') ps.push(v.extra);
      if (v.edit === 'drop') ps.pop();
      if (v.edit === 'dotdot') ps.splice(1, 0, v.extra, '..');
      let p = `/ogcapi${ps.length ? '/' + ps.join('/') : ''}`;
      if (v.edit === 'trailing') p += '/';
      if (v.edit === 'double') p = p.replace('/ogcapi', '/ogcapi/');
      return req('ogcapi')({ method: v.method, path: p + v.q, headers: v.headers });
    });

  // -- the viewer, the index page, /health, /metrics and paths that lead nowhere -------------------------------
  const pagesArb = fc
    .record({
      p: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom('/', '/health', '/metrics', '/viewer', '/viewer/', '/index.html', '/favicon.ico', '/robots.txt', '/%2e%2e/%2e%2e/etc/passwd', '/..;/api', '//', '/./', '/viewer/assets/ol.js', '/viewer/assets/ol.css', '/viewer/assets/ol.js.map', '/viewer/assets/', '/viewer/assets/ol.d.ts', '/viewer/assets/..%2Fpackage.json', '/viewer/assets/%2e%2e%2fpackage.json', '/viewer/assets/__proto__', '/viewer/assets/constructor', '/viewer/assets/toString') },
        { weight: 3, arbitrary: path('/viewer', [layerSeg()]) },
        { weight: 1, arbitrary: path('/viewer/assets', [seg(['ol.js', 'ol.css', 'ol.js.map'])]) },
        { weight: 2, arbitrary: fc.array(inUrl(text), { minLength: 1, maxLength: 5 }).map((s) => '/' + s.join('/')) },
        { weight: 1, arbitrary: longText.map((s) => '/' + pct(s)) },
      ),
      q: query(anyPairs),
      method: METHODS_READ,
      headers: commonHeaders,
    })
    .map((v) => req('pages')({ method: v.method, path: v.p + v.q, headers: v.headers }));

  // -- the management API --------------------------------------------------------------------------------------
  const pools: Record<string, string[]> = {
    d: [ids.d],
    endpoint: [ids.endpoint],
    upload: [ids.upload, ids.openUpload],
    check: [ids.check],
    processing: [ids.processing],
    execution: [ids.execution],
    stored_data: [ids.storedData],
    configuration: [ids.configuration, ids.spareConfiguration, ids.unpublishedConfiguration],
    offering: [ids.offering, ids.spareOffering],
  };
  const allIds = [...new Set(Object.values(pools).flat())];
  const idOf = (kind: string): fc.Arbitrary<string> =>
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...pools[kind]) },
      { weight: 1, arbitrary: fc.constantFrom(...allIds) },
      { weight: 1, arbitrary: fc.uuid() },
      {
        weight: 2,
        arbitrary: fc.constantFrom(...pools[kind]).chain((id) =>
          fc.constantFrom('00000000-0000-0000-0000-000000000000', id.toUpperCase(), `${id}x`, `%20${id}`, `${id}%2F..`, '..', '..%2F..%2F', '%2e%2e', `..%2F${id}`, '.', '%00', `${id}%00`, 'null', '__proto__', 'constructor', 'hasOwnProperty', `${id};x`, id.slice(0, 35)),
        ),
      },
      { weight: 1, arbitrary: inUrl(text) },
    );
  const D = '/api/datastores/{d}';
  const ROUTES = [
    '/api', '/api/', '/api/openapi.json', '/api/datastores', D, `${D}/endpoints`, `${D}/endpoints/{endpoint}`,
    `${D}/uploads`, `${D}/uploads/{upload}`, `${D}/uploads/{upload}/data`, `${D}/uploads/{upload}/tree`, `${D}/uploads/{upload}/close`,
    `${D}/uploads/{upload}/open`, `${D}/uploads/{upload}/checks`, `${D}/checks/executions/{check}`, `${D}/checks/executions/{check}/logs`,
    `${D}/processings`, `${D}/processings/{processing}`, `${D}/processings/executions`, `${D}/processings/executions/{execution}`,
    `${D}/processings/executions/{execution}/launch`, `${D}/processings/executions/{execution}/abort`, `${D}/processings/executions/{execution}/logs`,
    `${D}/stored_data`, `${D}/stored_data/{stored_data}`, `${D}/stored_data/{stored_data}/dependencies`,
    `${D}/configurations`, `${D}/configurations/{configuration}`, `${D}/configurations/{configuration}/offerings`,
    `${D}/offerings`, `${D}/offerings/{offering}`, `${D}/offerings/{offering}/stats`, `${D}/permissions`, '/api/users/me', '/api/users/me/keys',
    '/api/users/me/permissions', `${D}/statics`, '/api/datastores/{d}/{d}',
  ];
  const apiPath = fc.constantFrom(...ROUTES).chain((tpl) => {
    const names = [...tpl.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    return fc.tuple(...names.map(idOf)).map((vals) => {
      let i = 0;
      return tpl.replace(/\{(\w+)\}/g, () => vals[i++]);
    });
  });
  const qValue = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom('1', '0', '-1', '2', '10', '100', '101', '1000000', '1000001', '1e3', '1.5', 'abc', '', '%', 'NaN', 'Infinity', '0x10', ' 5', 'OPEN', 'CLOSED', 'PUBLISHED', 'published', 'GENERATED', 'WMTS-TMS', 'RASTER', 'relief', 'data/north.tif', '../x', '__proto__') },
    { weight: 2, arbitrary: fc.constantFrom(...allIds) },
    { weight: 2, arbitrary: inUrl(text) },
  );
  const qKey = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('page', 'limit', 'sort', 'status', 'type', 'name', 'layer_name', 'stored_data', 'endpoint', 'configuration', 'path', 'f') }, { weight: 1, arbitrary: inUrl(text) });
  const apiQuery = query(fc.array(fc.tuple(qKey, qValue), { maxLength: 4 }));
  const auth = fc.oneof(
    { weight: 12, arbitrary: fc.constant(`Bearer ${TOKEN}`) },
    { weight: 3, arbitrary: fc.constant(undefined) },
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        `bearer ${TOKEN}`, `BEARER  ${TOKEN}`, `Bearer ${TOKEN} extra`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, 'Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz',
        `Token ${TOKEN}`, TOKEN, '', `Bearer ${'x'.repeat(12000)}`, `Bearer\t${TOKEN}`, `Bearer ${TOKEN}, Bearer ${TOKEN}`,
      ),
    },
  );
  const contentType = fc.oneof(
    { weight: 6, arbitrary: fc.constant('application/json') },
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: fc.constantFrom('text/plain', 'application/json; charset=latin1', 'application/x-www-form-urlencoded', 'multipart/form-data', 'multipart/form-data; boundary=x', 'application/octet-stream', 'application/xml', ';;;', 'application/json; boundary=', CANARY) },
  );

  const TEMPLATES: Record<string, unknown> = {
    upload: { name: 'fuzz', description: 'fuzzed upload', type: 'RASTER', srs: 'EPSG:2154', tags: { a: 'b' } },
    uploadPatch: { name: 'renamed', description: 'd', tags: { k: 'v' } },
    execution: {
      processing: ids.processing,
      inputs: { upload: [ids.upload], stored_data: [] },
      output: { stored_data: { name: 'fuzzed', storage_tags: ['PYRAMIDE'], tags: {} } },
      parameters: { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom: 6, top: 0, quality: 80, nodata: [0, 0, 0] },
    },
    configuration: {
      type: 'WMTS-TMS',
      name: 'fuzzed',
      layer_name: 'fuzzed',
      type_infos: { title: 't', abstract: 'a', keywords: ['k'], used_data: [{ stored_data: ids.storedData, bottom_level: '6', top_level: '0' }], bbox: { west: -5, south: 41, east: 10, north: 51 } },
      getfeatureinfo: { stored_data: true },
      metadata: [{ format: 'application/xml', url: 'https://example.com/md?a=1&b=2', type: 'ISO19115:2003' }],
      attribution: { title: 'x', url: 'https://example.com', logo: { format: 'image/png', url: 'https://example.com/l.png', width: 10, height: 10 } },
      tags: {},
    },
    configurationPatch: { name: 'n', tags: { a: 'b' }, type_infos: { title: 't', abstract: 'a', keywords: ['k'], bbox: { west: -5, south: 41, east: 10, north: 51 } }, getfeatureinfo: { stored_data: false } },
    offering: { endpoint: ids.endpoint, open: true, available: true },
    offeringPatch: { open: true, available: true },
    storedDataPatch: { name: 'n', tags: { a: 'b' } },
  };
  const DROP = Symbol('drop');
  const keyPaths = (v: unknown, prefix: (string | number)[] = []): (string | number)[][] => {
    if (!v || typeof v !== 'object') return [];
    const out: (string | number)[][] = [];
    for (const [k, x] of Object.entries(v)) {
      const p = [...prefix, Array.isArray(v) ? Number(k) : k];
      out.push(p, ...keyPaths(x, p));
    }
    return out;
  };
  const deep = (n: number): unknown => {
    let v: unknown = 'x';
    for (let i = 0; i < n; i++) v = i % 2 ? [v] : { a: v };
    return v;
  };
  const weirdJson: fc.Arbitrary<unknown> = fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    {
      weight: 3,
      arbitrary: fc.constantFrom<unknown>(
        -1, 0, 1, 1e308, -1e308, 2 ** 53 + 1, 1.5, '', ' ', [], {}, null, true, false, '6', '22', '-1', 'PM', 'png', 'EPSG:4326', 'EPSG:999999', 'EPSG:',
        'foo:bar', '+proj=longlat', 'IGNF:LAMB93', CANARY, '__proto__', ids.storedData, ids.upload, [ids.upload, ids.upload], Array(150).fill(ids.upload), [ids.storedData, ids.storedData],
        'x'.repeat(5000), { '': '' }, [[[]]], ['6'], [6], 'RASTER', 'WMTS-TMS', 'jpg', 'webp', 'nn', 'javascript:alert(1)', '\u0000', 'a\nb', '../../x',
      ),
    },
    { weight: 1, arbitrary: fc.integer({ min: 50_000, max: 200_000 }).map((n) => 'y'.repeat(n)) },
    { weight: 1, arbitrary: fc.integer({ min: 10, max: 3000 }).map(deep) },
  );
  /** A template as is (a valid body), or with a few fields dropped, retyped or added. */
  const mutate = (name: string): fc.Arbitrary<unknown> => {
    const tpl = TEMPLATES[name];
    const paths = keyPaths(tpl);
    const edit = fc.tuple(fc.constantFrom(...paths), fc.oneof({ weight: 1, arbitrary: fc.constant<unknown>(DROP) }, { weight: 3, arbitrary: weirdJson }));
    const edits = fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 2, arbitrary: fc.array(edit, { minLength: 1, maxLength: 3 }) });
    const extra = fc.oneof(
      { weight: 4, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.tuple(fc.oneof(fc.constantFrom('unknown', '_id', 'status', 'datastore', 'creation', '__proto__'), fc.string({ maxLength: 10 })), weirdJson) },
    );
    return fc.tuple(edits, extra).map(([es, extra]) => {
      const o = structuredClone(tpl) as Record<string, unknown>;
      for (const [p, v] of es) {
        let cur = o as Record<string | number, unknown>;
        for (const k of p.slice(0, -1)) {
          const next = cur?.[k];
          if (!next || typeof next !== 'object') {
            cur = undefined as never;
            break;
          }
          cur = next as Record<string | number, unknown>;
        }
        if (!cur) continue;
        const last = p[p.length - 1];
        if (v === DROP) delete cur[last];
        else cur[last] = v;
      }
      if (extra) Object.defineProperty(o, extra[0], { value: extra[1], enumerable: true, writable: true, configurable: true });
      return o;
    });
  };
  const mutated = fc.constantFrom(...Object.keys(TEMPLATES)).chain(mutate);
  const deepText = fc.tuple(fc.integer({ min: 1000, max: 100_000 }), fc.boolean()).map(([n, arr]) => (arr ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n)));
  const body: fc.Arbitrary<string | undefined> = fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '', ' ', '\n', 'null', '[]', '{}', '""', '0', 'true', '{"a":1}', '{', '}', '[', '{"name":', "{'name':'x'}", '{"name":"x",}', '{"name":NaN}', '\ufeff{}',
        '{"a":1}garbage', '{"__proto__":{"polluted":true},"name":"x","type":"RASTER","srs":"EPSG:2154"}', '{"constructor":{"prototype":{"polluted":true}}}',
        '{"tags":{"__proto__":"x","constructor":"y","toString":"z"}}', '{"name":"\\ud800","type":"RASTER","srs":"EPSG:2154"}', '{"name":"\\u0000","type":"RASTER","srs":"EPSG:2154"}',
        '\x00\x01\x02', `{"a":${'1'.repeat(1000)}}`, '{"name":1e999}', '{"a":1,"a":2}', '[{"endpoint":"x"}]',
      ),
    },
    { weight: 8, arbitrary: mutated.map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.tuple(mutated.map((v) => JSON.stringify(v)), fc.nat()).map(([s, n]) => s.slice(0, n % (s.length + 1))) },
    { weight: 1, arbitrary: deepText },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  );
  const apiMethod = fc.oneof(
    { weight: 5, arbitrary: fc.constant('GET') },
    { weight: 4, arbitrary: fc.constant('POST') },
    { weight: 2, arbitrary: fc.constantFrom('PUT', 'PATCH', 'DELETE') },
    { weight: 1, arbitrary: fc.constantFrom('HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'SEARCH', 'LINK', 'get') },
  );
  const freeApi = fc
    .record({ method: apiMethod, path: apiPath, q: apiQuery, auth, type: contentType, body, headers: commonHeaders })
    .map((v) => {
      const headers: Record<string, string> = { ...v.headers };
      if (v.auth !== undefined) headers.Authorization = v.auth;
      let method = v.method;
      // the published layer the final check reads is kept: its offering is only read
      if (v.path.includes(ids.offering) && !['GET', 'HEAD', 'OPTIONS'].includes(method)) method = 'GET';
      const hasBody = v.body !== undefined && method !== 'GET' && method !== 'HEAD' && method !== 'TRACE';
      if (hasBody && v.type !== undefined) headers['Content-Type'] = v.type;
      return req('api')({ method, path: v.path + v.q, headers, body: hasBody ? v.body : undefined });
    });
  // the operations that take a body, with their own template: valid calls, and near misses
  const SHAPED: [string, string, string][] = [
    ['POST', `${D}/uploads`, 'upload'],
    ['PATCH', `${D}/uploads/{upload}`, 'uploadPatch'],
    ['POST', `${D}/processings/executions`, 'execution'],
    ['POST', `${D}/configurations`, 'configuration'],
    ['PUT', `${D}/configurations/{configuration}`, 'configuration'],
    ['PATCH', `${D}/configurations/{configuration}`, 'configurationPatch'],
    ['POST', `${D}/configurations/{configuration}/offerings`, 'offering'],
    ['PATCH', `${D}/offerings/{offering}`, 'offeringPatch'],
    ['PUT', `${D}/offerings/{offering}`, 'offeringPatch'],
    ['DELETE', `${D}/offerings/{offering}`, 'offeringPatch'],
    ['PATCH', `${D}/stored_data/{stored_data}`, 'storedDataPatch'],
    ['DELETE', `${D}/stored_data/{stored_data}`, 'storedDataPatch'],
    ['DELETE', `${D}/configurations/{configuration}`, 'configuration'],
    ['POST', `${D}/processings/executions/{execution}/launch`, 'execution'],
    ['POST', `${D}/processings/executions/{execution}/abort`, 'execution'],
    ['POST', `${D}/uploads/{upload}/close`, 'upload'],
    ['POST', `${D}/uploads/{upload}/open`, 'upload'],
  ];
  const validId = (kind: string) => fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...pools[kind]) }, { weight: 1, arbitrary: idOf(kind) });
  const shaped = fc.constantFrom(...SHAPED).chain(([method, tpl, name]) => {
    const names = [...tpl.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
    return fc
      .record({
        ids: fc.tuple(...names.map(validId)),
        body: fc.oneof({ weight: 5, arbitrary: mutate(name).map((o) => JSON.stringify(o)) }, { weight: 1, arbitrary: body }),
        type: fc.oneof({ weight: 5, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: contentType }),
        auth: fc.oneof({ weight: 8, arbitrary: fc.constant(`Bearer ${TOKEN}`) }, { weight: 1, arbitrary: auth }),
        q: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: apiQuery }),
      })
      .map((v) => {
        let i = 0;
        const path = tpl.replace(/\{(\w+)\}/g, () => v.ids[i++]);
        const kept = path.includes(ids.offering) && method !== 'GET';
        const headers: Record<string, string> = {};
        if (v.auth !== undefined) headers.Authorization = v.auth;
        if (v.body !== undefined && v.type !== undefined) headers['Content-Type'] = v.type;
        return req('api')({ method: kept ? 'GET' : method, path: path + v.q, headers, body: kept ? undefined : v.body });
      });
  });
  const apiArb = fc.oneof({ weight: 1, arbitrary: freeApi }, { weight: 1, arbitrary: shaped });

  return { wmtsKvp, wmtsRest, tmsArb, xyzArb, ogcArb, pagesArb, apiArb };
}

// -- uploads: paths, raw and multipart bodies around the size limit, on an upload of its own ------------------
function uploadArb(ids: Ids, upload: string) {
  const U = `/api/datastores/${ids.d}/uploads/${upload}`;
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const filePath = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.constantFrom(
        'a', 'b', 'a/b', 'a/b/c', 'b/a', 'x.tif', 'a/x.tif', 'a.part', 'a/b.tif.0123abcd.part', 'é/ü.tif', 'a//b', 'a/', ' a', 'a ', 'CON', 'a:b', '*', '?', 'a"b',
        '../a', 'a/../b', '/a', './a', 'a/./b', '..', '.', '', 'a\\b', 'a\u0000b', 'a\nb', 'a'.repeat(256), `${'a/'.repeat(400)}z`, 'a'.repeat(255), `${'d/'.repeat(60)}f`,
      ),
    },
    { weight: 1, arbitrary: text },
  );
  const pathQuery = fc.tuple(filePath, fc.constantFrom('enc', 'enc', 'raw', 'dup', 'none', 'empty')).map(([p, how]) => {
    if (how === 'none') return '';
    if (how === 'empty') return '?path=';
    if (how === 'dup') return `?path=${pct(p)}&path=a`;
    return `?path=${how === 'enc' ? pct(p) : rawish(p)}`;
  });
  const size = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 2000 }) },
    { weight: 2, arbitrary: fc.integer({ min: UPLOAD_MAX - 1000, max: UPLOAD_MAX + 1000 }) },
    { weight: 1, arbitrary: fc.integer({ min: UPLOAD_MAX + 1000, max: UPLOAD_MAX + 70_000 }) },
  );
  const multipart = fc
    .record({
      size,
      boundary: fc.constantFrom('b0undary', 'b0undary', '----WebKitFormBoundary7MA4YWxkTrZu0gW', 'x'.repeat(80), '"q"', ''),
      field: fc.constantFrom('file', 'file', 'file', 'files', 'File', ''),
      filename: fc.constantFrom('a.tif', '', '../../x.tif', 'é.tif', CANARY, undefined),
      extraFiles: fc.nat({ max: 2 }),
      extraFields: fc.constantFrom(0, 0, 1, 20),
      bad: fc.constantFrom('none', 'none', 'none', 'truncate', 'wrong-boundary', 'no-boundary', 'no-headers', 'no-close', 'garbage'),
      cut: fc.double({ min: 0, max: 1, noNaN: true }),
      chunked: fc.boolean(),
    })
    .map((v) => {
      const b = v.boundary.replace(/"/g, '');
      const part = (name: string, filename: string | undefined, data: string) =>
        `--${b}\r\nContent-Disposition: form-data; name="${name}"${filename === undefined ? '' : `; filename="${filename}"`}\r\nContent-Type: application/octet-stream\r\n\r\n${data}\r\n`;
      let s = '';
      for (let i = 0; i < v.extraFields; i++) s += part(`f${i}`, undefined, 'v');
      s += part(v.field, v.filename, 'z'.repeat(v.size));
      for (let i = 0; i < v.extraFiles; i++) s += part('file', 'more.tif', 'w'.repeat(100));
      s += `--${b}--\r\n`;
      let type = `multipart/form-data; boundary=${v.boundary}`;
      if (v.bad === 'truncate') s = s.slice(0, Math.floor(s.length * v.cut));
      if (v.bad === 'wrong-boundary') type = 'multipart/form-data; boundary=other';
      if (v.bad === 'no-boundary') type = 'multipart/form-data';
      if (v.bad === 'no-headers') s = s.replace(/\r\n\r\n/g, '\r\n');
      if (v.bad === 'no-close') s = s.slice(0, s.lastIndexOf(`--${b}--`));
      if (v.bad === 'garbage') s = `garbage\r\n${s}`;
      return { type, body: s, chunked: v.chunked };
    });
  const rawBody = fc
    .record({ size, type: fc.constantFrom('application/octet-stream', 'image/tiff', undefined, 'application/json', 'multipart/mixed', 'text/plain; charset=utf-8'), chunked: fc.boolean() })
    .map((v) => ({ type: v.type, body: 'r'.repeat(v.size), chunked: v.chunked }));
  const push = fc.record({ q: pathQuery, payload: fc.oneof(rawBody, multipart), method: fc.constantFrom('POST', 'POST', 'POST', 'PUT') }).map(({ q, payload, method }) =>
    printable({
      family: 'uploads',
      method,
      path: `${U}/data${q}`,
      headers: { ...auth, ...(payload.type !== undefined ? { 'Content-Type': payload.type } : {}) },
      body: payload.body,
      chunked: payload.chunked,
    }),
  );
  const other = fc
    .record({ q: pathQuery, op: fc.constantFrom('remove', 'remove', 'remove', 'tree', 'get', 'close', 'open', 'open', 'checks') })
    .map(({ q, op }) => {
      const [method, p] =
        op === 'remove' ? ['DELETE', `${U}/data${q}`] : op === 'tree' ? ['GET', `${U}/tree`] : op === 'get' ? ['GET', U] : op === 'checks' ? ['GET', `${U}/checks`] : ['POST', `${U}/${op}`];
      return printable({ family: 'uploads', method, path: p, headers: auth });
    });
  return fc.oneof({ weight: 6, arbitrary: push }, { weight: 2, arbitrary: other });
}

// -- malformed HTTP on raw sockets ------------------------------------------------------------------------------
function rawArb(ids: Ids) {
  const ref = `/tiles/${LAYER}/${ids.ref.z}/${ids.ref.col}/${ids.ref.row}.png`;
  const targets = [ref, '/wmts?SERVICE=WMTS&REQUEST=GetCapabilities', `/api/datastores/${ids.d}`, '/ogcapi', '/', '/health', `/viewer/${LAYER}`, `/tms/1.0.0/${LAYER}`];
  const target = fc.constantFrom(...targets);
  const H = (host = 'fuzz.test') => `Host: ${host}\r\nConnection: close\r\n`;
  const mk = (raw: string, asked: { method: string; target: string }[], answerDue = true) => printable({ family: 'raw', method: asked[0]?.method ?? '?', path: asked[0]?.target ?? '?', headers: {}, raw, asked, answerDue });

  const requestLine = fc
    .record({
      method: fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'get', 'G\x00T', 'FOO', 'GET GET', 'PRI', ''),
      target: fc.oneof(target, fc.constantFrom('*', 'http://example.com' + ref, 'http://[::1' + ref, 'https://x/', 'ftp://x/', '//x/y', 'tiles/relief', '', ' ', '/a b', '/\x00', '/é', '/\xff\xfe', '/%', '/\\..\\', `${ref}\t`, '/' + 'u'.repeat(20000), '/api/../tiles', '/api/%2e%2e/health')),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.2', 'http/1.1', 'HTTP/1', '', 'HTTP/1.1 extra'),
    })
    // `PRI <path>` without a version (HTTP/0.9 with the HTTP/2 preface's method) is closed by @hono/node-server unanswered
    .map((v) => mk(`${v.method} ${v.target}${v.version ? ` ${v.version}` : ''}\r\n${H()}\r\n`, [{ method: v.method, target: v.target }], !(v.method === 'PRI' && !v.version)));

  const host = fc
    .record({ target, host: fc.constantFrom<string | null>(null, '', 'a b', '[::1', CANARY, 'x'.repeat(5000), 'évil', 'h:0', 'h:99999', 'h:abc', 'h:80, h:81'), twice: fc.boolean(), v10: fc.boolean() })
    .map((v) => {
      const hostLines = v.host === null ? '' : `Host: ${v.host}\r\n${v.twice ? `Host: other\r\n` : ''}`;
      return mk(`GET ${v.target} HTTP/1.${v.v10 ? 0 : 1}\r\n${hostLines}Connection: close\r\n\r\n`, [{ method: 'GET', target: v.target }]);
    });

  const headerSyntax = fc
    .record({
      target,
      bad: fc.constantFrom(
        'X-A : b\r\n', 'no colon here\r\n', 'X-A: b\r\n folded\r\n', 'X-A: \x00\r\n', ': empty-name\r\n', 'X-A: b\rX-B: c\r\n', `X-Long: ${'l'.repeat(20000)}\r\n`,
        'X-Many: m\r\n'.repeat(2000), `Cookie: ${'c=1; '.repeat(3000)}\r\n`, 'Content-Length: 1\r\nContent-Length: 2\r\n', 'Content-Length: -1\r\n', 'Content-Length: abc\r\n',
        'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n', 'Transfer-Encoding: gzip, chunked\r\n', 'Transfer-Encoding: identity\r\n', 'Expect: 100-continue\r\n', 'Expect: garbage\r\n',
        'Content-Type: application/json\r\n', 'If-None-Match: *\r\n', 'Accept-Encoding: gzip\r\n', `X-Forwarded-Host: ${CANARY}\r\n`, 'X-Forwarded-Proto: <a\r\n', 'Authorization: Bearer \xff\xfe\r\n',
        'X-Utf8: \xc3\xa9\r\n',
      ),
      lf: fc.boolean(),
    })
    .map((v) => {
      let s = `GET ${v.target} HTTP/1.1\r\n${H()}${v.bad}\r\n`;
      if (v.lf) s = s.replace(/\r\n/g, '\n');
      const chunkedBody = /Transfer-Encoding: (gzip, )?chunked/.test(v.bad) ? '0\r\n\r\n' : '';
      return mk(s + chunkedBody, [{ method: 'GET', target: v.target }]);
    });

  const bodies = fc
    .record({
      target: fc.constantFrom(`/api/datastores/${ids.d}/uploads`, `/api/datastores/${ids.d}/uploads/${ids.openUpload}/data?path=raw/a.tif`, `/api/datastores/${ids.d}/configurations`, ref, '/wmts'),
      kind: fc.constantFrom('short', 'short', 'bad-chunks', 'chunk-ext', 'huge-chunk', 'upgrade', 'connect', 'pipeline', 'pipeline-bad', 'post-then-get'),
      n: fc.integer({ min: 1, max: 400 }),
    })
    .map((v) => {
      const a = `Authorization: Bearer ${TOKEN}\r\n`;
      switch (v.kind) {
        case 'short':
          // declares more than it sends, then closes: the request is aborted mid-body
          return mk(`POST ${v.target} HTTP/1.1\r\n${H()}${a}Content-Type: application/json\r\nContent-Length: ${v.n + 1000}\r\n\r\n${'{'.repeat(v.n)}`, [{ method: 'POST', target: v.target }], false);
        case 'bad-chunks':
          return mk(`POST ${v.target} HTTP/1.1\r\n${H()}${a}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, [{ method: 'POST', target: v.target }]);
        case 'chunk-ext':
          return mk(`POST ${v.target} HTTP/1.1\r\n${H()}${a}Transfer-Encoding: chunked\r\n\r\n2;${'e'.repeat(v.n * 50)}\r\n{}\r\n0\r\n\r\n`, [{ method: 'POST', target: v.target }]);
        case 'huge-chunk':
          return mk(`POST ${v.target} HTTP/1.1\r\n${H()}${a}Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}`, [{ method: 'POST', target: v.target }], false);
        case 'upgrade':
          return mk(`GET ${v.target} HTTP/1.1\r\nHost: fuzz.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, [{ method: 'GET', target: v.target }], false);
        case 'connect':
          return mk(`CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n`, [{ method: 'CONNECT', target: '/' }], false);
        case 'pipeline':
          return mk(`GET ${ref} HTTP/1.1\r\nHost: fuzz.test\r\n\r\nGET ${v.target} HTTP/1.1\r\n${H()}\r\n`, [{ method: 'GET', target: ref }, { method: 'GET', target: v.target }]);
        case 'pipeline-bad':
          return mk(`GET ${ref} HTTP/1.1\r\nHost: fuzz.test\r\n\r\nGARBAGE\r\n\r\n`, [{ method: 'GET', target: ref }, { method: '?', target: '/' }], false);
        case 'post-then-get':
          return mk(`POST ${v.target} HTTP/1.1\r\nHost: fuzz.test\r\n${a}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}GET ${ref} HTTP/1.1\r\n${H()}\r\n`, [{ method: 'POST', target: v.target }, { method: 'GET', target: ref }]);
      }
      throw new Error(v.kind);
    });
  return fc.oneof(requestLine, host, headerSyntax, bodies);
}

// ---------------------------------------------------------------------------------------------------
// Setup: a server with one published layer (and a spare one the fuzzer may change)

let ids: Ids;
let arbs: ReturnType<typeof makeArbs>;
const before: { xyz?: Buffer; wmts?: Buffer } = {};
const refXyz = () => `/tiles/${LAYER}/${ids.ref.z}/${ids.ref.col}/${ids.ref.row}.png`;
const refWmts = () => `/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=${LAYER}&STYLE=normal&FORMAT=image/png&TILEMATRIXSET=PM&TILEMATRIX=${ids.ref.z}&TILEROW=${ids.ref.row}&TILECOL=${ids.ref.col}`;

async function fetchBytes(p: string): Promise<{ status: number; etag: string | null; bytes: Buffer }> {
  const r = await fetch(`${t.base}${p}`);
  return { status: r.status, etag: r.headers.get('etag'), bytes: Buffer.from(await r.arrayBuffer()) };
}

beforeAll(async () => {
  t = await startTuile(data.path, ENV);
  const api = new Api(t.base);
  const d = await api.init();
  const up = await api.deliver([{ path: 'data/north.tif', file: fixture('france_relief_north_2154.tif') }], 'EPSG:2154', 'north');
  expect(up.status).toBe('CLOSED');
  const e = await api.execute({ upload: [up._id] }, { compression: 'png', bottom: 6 }, 'north');
  const { entity } = await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE']);
  expect(entity.status).toBe('SUCCESS');
  const sd = entity.output.stored_data._id;
  const endpoint = await api.endpoint();
  const publish = async (layer: string, meta: Record<string, unknown> = {}) => {
    const conf = api.configuration(layer, sd, '6');
    Object.assign(conf.type_infos, meta);
    return api.publish(conf, { endpoint });
  };
  const main = await publish(LAYER);
  // metadata that every document showing the spare layer must escape
  const spare = await publish('spare', { title: `Spare ${CANARY} & "q" 'a' ]]>`, abstract: `a < b && c > d ${CANARY}`, keywords: [CANARY, '&amp;', ']]>'] });
  const unpublished = await api.call('POST', `${api.d}/configurations`, api.configuration('unpublished', sd, '6'));
  const open = await api.call('POST', `${api.d}/uploads`, { name: 'open', description: 'fuzz', type: 'RASTER', srs: 'EPSG:2154' });
  expect(open.status).toBe(201);
  const checks = await api.call('GET', `${api.d}/uploads/${up._id}/checks`);
  // the layer's limits, from its OGC API tileset: tiles at the corners and in the middle of each level
  const ts = await (await fetch(`${t.base}/ogcapi/collections/${LAYER}/map/tiles/WebMercatorQuad`)).json();
  const tiles: Tile[] = [];
  for (const l of ts.tileMatrixSetLimits as { tileMatrix: string; minTileRow: number; maxTileRow: number; minTileCol: number; maxTileCol: number }[]) {
    const z = Number(l.tileMatrix);
    const mid = (a: number, b: number) => Math.floor((a + b) / 2);
    tiles.push({ z, row: l.minTileRow, col: l.minTileCol }, { z, row: l.maxTileRow, col: l.maxTileCol }, { z, row: mid(l.minTileRow, l.maxTileRow), col: mid(l.minTileCol, l.maxTileCol) });
  }
  ids = {
    d,
    endpoint,
    upload: up._id,
    openUpload: open.body._id,
    execution: e._id,
    storedData: sd,
    configuration: main.configuration,
    offering: main.offering,
    spareConfiguration: spare.configuration,
    spareOffering: spare.offering,
    unpublishedConfiguration: unpublished.body._id,
    check: checks.body.passed[0]._id,
    processing: await api.processing(),
    tiles,
    ref: tiles[0],
  };
  // the reference tile: one with data (not the blank tile) at the deepest level
  const deepest = Math.max(...tiles.map((x) => x.z));
  const lim = (ts.tileMatrixSetLimits as any[]).find((l) => Number(l.tileMatrix) === deepest);
  search: for (let row = lim.minTileRow; row <= lim.maxTileRow; row++) {
    for (let col = lim.minTileCol; col <= lim.maxTileCol; col++) {
      ids.ref = { z: deepest, row, col };
      const r = await fetchBytes(refXyz());
      if (r.status === 200 && !r.etag?.startsWith('"blank')) break search;
    }
  }
  const xyz = await fetchBytes(refXyz());
  expect(xyz.status).toBe(200);
  expect(xyz.etag).not.toMatch(/^"blank/);
  const wmts = await fetchBytes(refWmts());
  expect(wmts.status).toBe(200);
  expect(wmts.bytes.equals(xyz.bytes)).toBe(true);
  before.xyz = xyz.bytes;
  before.wmts = wmts.bytes;
  arbs = makeArbs(ids);
});

afterAll(async () => {
  const seconds = (Date.now() - started) / 1000;
  // distinct failures: one per family, status and problem (ids and numbers left out), the shortest request kept
  const distinct = new Map<string, Failure>();
  for (const f of failures) {
    // the error the server logged tells two 500s apart
    const logged = /^tuile: \S+ \S*?: (.*)$/m.exec(f.serverLog)?.[1] ?? /^\w*Error: .*$/m.exec(f.serverLog)?.[0] ?? '';
    const norm = (x: string) => x.replace(/'[^']*'/g, "'…'").replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>').replace(/\d+/g, 'N').slice(0, 120);
    const key = `${f.family}|${f.status}|${norm(f.problem)}|${norm(logged)}`;
    const cur = distinct.get(key);
    if (!cur || f.request.length < cur.request.length) distinct.set(key, f);
  }
  const lines = [
    `fuzz: ${sent} requests sent in ${seconds.toFixed(1)} s (${Object.entries(perFamily).map(([k, n]) => `${k} ${n}`).join(', ')}), seed ${SEED}, ${RUNS} runs per family`,
    `fuzz: statuses ${Object.entries(statuses).map(([k, c]) => `${k} {${Object.entries(c).map(([st, n]) => `${st}: ${n}`).join(', ')}}`).join('; ')}`,
    `fuzz: ${distinct.size} distinct failure(s), ${crashes.length} crash(es)`,
    ...[...distinct.values()].map(failureText),
    ...crashes.map((c) => `crash (${c.exit}) after:\n  ${c.after.join('\n  ')}\n  output: ${short(c.output, 3000)}`),
  ];
  console.log(lines.join('\n'));
  if (REPORT) writeFileSync(REPORT, JSON.stringify({ requests: sent, seconds, perFamily, statuses, seed: SEED, runs: RUNS, failures: [...distinct.values()], crashes }, null, 2));
  await t?.stop();
  data.cleanup();
});

async function run(arb: fc.Arbitrary<Req>): Promise<void> {
  const from = failures.length;
  await fc.assert(fc.asyncProperty(arb, exercise), { seed: SEED, numRuns: RUNS });
  if (COLLECT) expect(failures.slice(from).map(failureText)).toEqual([]);
}

describe(`fuzzing every route (${RUNS} requests per family, seed ${SEED})`, () => {
  it('WMTS KVP: GetTile, GetFeatureInfo, GetCapabilities with missing, duplicated, unknown and oversized parameters', async () => run(arbs.wmtsKvp), IT_TIMEOUT_MS);
  it('WMTS RESTful: tiles, FeatureInfo and capabilities with bent paths', async () => run(arbs.wmtsRest), IT_TIMEOUT_MS);
  it('TMS: service documents, TileMaps and tiles', async () => run(arbs.tmsArb), IT_TIMEOUT_MS);
  it('XYZ tiles', async () => run(arbs.xyzArb), IT_TIMEOUT_MS);
  it('OGC API - Tiles: landing, conformance, tile matrix sets, collections, tilesets, tiles, f=', async () => run(arbs.ogcArb), IT_TIMEOUT_MS);
  it('pages: index, viewer and its assets, /health, /metrics, paths that lead nowhere', async () => run(arbs.pagesArb), IT_TIMEOUT_MS);
  it('management API: methods, ids, queries, JSON bodies and tokens', async () => run(arbs.apiArb), IT_TIMEOUT_MS);
  it('uploads: file paths, raw and multipart bodies around the size limit', async () => {
    await ensureServer();
    const api = new Api(t.base);
    api.datastore = ids.d;
    const u = await api.call('POST', `${api.d}/uploads`, { name: 'fuzzed files', description: 'fuzz', type: 'RASTER', srs: 'EPSG:2154' });
    expect(u.status).toBe(201);
    await run(uploadArb(ids, u.body._id));
  }, IT_TIMEOUT_MS);
  it('raw HTTP: malformed request lines, hosts, headers, bodies, pipelining', async () => run(rawArb(ids)), IT_TIMEOUT_MS);

  it('afterwards the process still runs, /health answers and the published tile has the same bytes', async () => {
    expect(crashes.map((c) => `exit ${c.exit} after ${c.after.at(-1)}`)).toEqual([]);
    expect(alive()).toBe(true);
    const health = await fetch(`${t.base}/health`);
    expect(health.status).toBe(200);
    const xyz = await fetchBytes(refXyz());
    expect(xyz.status).toBe(200);
    expect(xyz.bytes.equals(before.xyz!)).toBe(true);
    const wmts = await fetchBytes(refWmts());
    expect(wmts.status).toBe(200);
    expect(wmts.bytes.equals(before.wmts!)).toBe(true);
  });
});
