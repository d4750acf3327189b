// The HTTP application: one Hono app with a sub-app per protocol, CORS, compression of documents,
// request metrics, /health and /metrics.

import { request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { compress } from 'hono/compress';
import { cors } from 'hono/cors';
import { DRAIN_BYTES, payloadTooLarge } from './api/http.js';
import type { Config } from './config.js';
import { mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './metrics.js';
import { jsonError, TuileError } from './errors.js';
import { CORS_EXPOSE, CORS_HEADERS, jsonErrorResponse, type ServerContext } from './protocols/tile.js';
import { endpointView } from './registry.js';
import type { RequestListener } from './shutdown.js';
import { tmsRoutes } from './protocols/tms.js';
import { xyzRoutes } from './protocols/xyz.js';
import { wmtsRoutes } from './protocols/wmts.js';
import { ogcapiRoutes } from './protocols/ogcapi.js';
import { viewerRoutes } from './protocols/viewer.js';
import { tileFastPath } from './protocols/fastpath.js';
import { matchTilePath, OGCAPI, TMS, WMTS_REST, XYZ } from './protocols/grammar.js';

export interface AppOptions {
  /** metrics of every serving process (cluster); defaults to this process only */
  collectMetrics?: () => Promise<MetricsSnapshot[]>;
  /** the management API, served in this process under /api */
  api?: Hono;
  /** or the port on 127.0.0.1 of the process that serves it (cluster: the primary owns the state) */
  apiPort?: number;
}

/** Where the private endpoint's layers are served: the same protocols under this path. */
const PRIVATE = '/private';

/** The context of one endpoint's protocols: its layers only, and links under its path. */
function endpointContext(ctx: ServerContext, priv: boolean): ServerContext {
  return { ...ctx, holder: endpointView(ctx.holder, priv), prefix: priv ? PRIVATE : '' };
}

/** The protocols of one endpoint, on their paths. */
function protocolRoutes(app: Hono, ctx: ServerContext): void {
  // mounted where the tile grammar says, which the fast path matches against
  app.route(WMTS_REST.mount, wmtsRoutes(ctx));
  app.route(TMS.mount, tmsRoutes(ctx));
  app.route(XYZ.mount, xyzRoutes(ctx));
  app.route(OGCAPI.mount, ogcapiRoutes(ctx));
  app.route('/', viewerRoutes(ctx));
}

/** The LAYER of a WMTS KVP request (parameter names are case-insensitive). */
function kvpLayer(url: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  for (const [k, v] of new URLSearchParams(url.slice(q + 1))) if (k.toLowerCase() === 'layer') return v;
  return undefined;
}

/** Whether a URL asks for a tile image (any protocol), from its form alone. */
function isTileRequest(url: string): boolean {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  const q = url.indexOf('?', start);
  let path = q < 0 ? url.slice(start) : url.slice(start, q);
  if (path.startsWith(PRIVATE + '/')) path = path.slice(PRIVATE.length);
  if (path === '/wmts') return q >= 0 && /[?&]request=gettile(&|$)/i.test(url.slice(q));
  return matchTilePath(path) !== null;
}

function createApp(ctx: ServerContext, opts: AppOptions = {}): Hono {
  // not strict: /ogcapi/ and /tms/1.0.0 are the same resources as /ogcapi and /tms/1.0.0/
  const app = new Hono({ strict: false });
  app.use('*', async (c, next) => {
    await next();
    // the matched route pattern, not the URL: bounded label values
    const route = c.req.routePath || 'unmatched';
    ctx.metrics.request(route, c.res.status);
    if (c.res.status < 400) {
      const layer = route.includes(':layer') ? c.req.param('layer') : route.endsWith('/wmts') ? kvpLayer(c.req.url) : undefined;
      if (layer) ctx.metrics.layer(layer, route);
    }
  });
  // Tile answers carry their own CORS headers and are never compressed: both middlewares would read the
  // response body, turning @hono/node-server's direct write of the bytes into a stream copy (10x slower).
  const corsMw = cors({
    origin: '*',
    allowMethods: ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowHeaders: ['Authorization', 'Content-Type', 'apikey', 'If-None-Match'],
    exposeHeaders: CORS_EXPOSE,
  });
  const compressMw = compress();
  app.use('*', async (c, next) => {
    if (c.req.method !== 'OPTIONS' && isTileRequest(c.req.url)) {
      await next();
      // tile errors (ExceptionReport, JSON, TileMapServerError) get the tiles' CORS headers, set in place:
      // the body is not touched, so the tiles' direct write stays as it is
      if (!c.res.headers.has('Access-Control-Allow-Origin')) for (const [k, v] of Object.entries(CORS_HEADERS)) c.res.headers.set(k, v);
      return;
    }
    // a preflight is answered by the CORS middleware itself: its response must be returned
    return corsMw(c, async () => {
      await compressMw(c, next);
    });
  });

  app.get('/health', (c) => c.json({ status: 'ok', pid: process.pid, layers: ctx.holder.current.layers.size, generation: ctx.holder.current.generation }));
  app.get('/metrics', async (c) => {
    const list = opts.collectMetrics ? await opts.collectMetrics() : [ctx.metrics.snapshot()];
    return c.text(renderPrometheus(mergeSnapshots(list), list.length), 200, { 'Content-Type': 'text/plain; version=0.0.4' });
  });

  const api = opts.api;
  if (api) {
    app.all('/api', (c) => api.fetch(c.req.raw));
    app.all('/api/*', (c) => api.fetch(c.req.raw));
  }
  const priv = new Hono({ strict: false });
  protocolRoutes(priv, endpointContext(ctx, true));
  app.route(PRIVATE, priv);
  protocolRoutes(app, endpointContext(ctx, false));
  app.notFound((c) => jsonErrorResponse(new TuileError('NotFound', `no route for ${c.req.method} ${new URL(c.req.url).pathname}`), c));
  app.onError(jsonErrorResponse);
  return app;
}

/**
 * The node:http request listener: tile URLs in path form take the fast path, everything else (and every
 * tile request it declines: errors, KVP, protected layers) the Hono application.
 */
export function createListener(ctx: ServerContext, opts: AppOptions = {}): RequestListener {
  const app = createApp(ctx, opts);
  const full = getRequestListener(app.fetch);
  // the fast path knows open-endpoint URLs only: private ones take the application
  const fast = tileFastPath(endpointContext(ctx, false));
  const apiPort = opts.apiPort;
  return (req, res) => {
    if (apiPort && (req.url === '/api' || req.url?.startsWith('/api/') || req.url?.startsWith('/api?'))) {
      proxy(req, res, apiPort, ctx.config.jsonMaxBytes);
      return;
    }
    let done: boolean | Promise<boolean>;
    try {
      done = fast(req, res);
    } catch (err) {
      return failed(req, res, err);
    }
    if (done === false) void full(req, usualHeaderCase(res));
    else if (done !== true) done.then((ok) => (ok ? undefined : void full(req, usualHeaderCase(res))), (err) => failed(req, res, err));
  };
}

/** A fast-path failure (a tile that could not be read): logged, answered 500 in JSON. */
function failed(req: IncomingMessage, res: ServerResponse, err: unknown): void {
  // the path only: a query may carry an apikey, which is never logged
  console.error(`tuile: ${req.method} ${req.url?.split('?')[0]}: ${(err as Error).stack ?? err}`);
  const e = jsonError(err);
  if (!res.headersSent) res.writeHead(e.status, { 'Content-Type': 'application/json', ...CORS_HEADERS });
  res.end(JSON.stringify(e.body));
}

const USUAL_NAMES: Record<string, string> = { etag: 'ETag', 'www-authenticate': 'WWW-Authenticate' };

/** A header name in its usual case: content-type -> Content-Type, etag -> ETag. */
function usualCase(name: string): string {
  return USUAL_NAMES[name] ?? name.replace(/(^|-)([a-z])/g, (_, dash: string, c: string) => dash + c.toUpperCase());
}

/**
 * Header names written in their usual case, not in the lower case of fetch's Headers. HTTP names are
 * case-insensitive, but QGIS 3.22 looks "Content-Type" up verbatim in a GetFeatureInfo answer: without
 * it, it parses GeoJSON as GML and its Identify in feature mode fails.
 */
function usualHeaderCase(res: ServerResponse): ServerResponse {
  const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => ServerResponse;
  res.writeHead = ((status: number, ...rest: unknown[]) => {
    const at = typeof rest[0] === 'string' ? 1 : 0; // writeHead(status, [statusMessage], [headers])
    const headers = rest[at];
    if (headers && typeof headers === 'object' && !Array.isArray(headers)) {
      const named: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(headers)) named[usualCase(k)] = v;
      rest[at] = named;
    }
    return writeHead(status, ...rest);
  }) as ServerResponse['writeHead'];
  return res;
}

/** A push of an upload's file: the one API body that is not JSON, bounded by its own limit. */
const PUSH_PATH = /^\/api\/datastores\/[^/?]+\/uploads\/[^/?]+\/data(\?|$)/;
/** How long a refused body is still read after the answer, at most (see `linger`). */
const LINGER_MS = 2000;

/**
 * Passes a request to the API process on 127.0.0.1, streaming both ways (uploads are large). JSON bodies go no
 * further than the API would read: one declared over `jsonMax` is refused here, and a longer chunked one is cut
 * after `jsonMax` + 1 bytes (the API then refuses it having read it all). Past its limit the API answers and
 * closes; if it did so while this process still wrote, the reset could lose its answer.
 */
function proxy(req: IncomingMessage, res: ServerResponse, port: number, jsonMax: number): void {
  const json = !(req.method === 'POST' && PUSH_PATH.test(req.url ?? ''));
  if (json && Number(req.headers['content-length']) > jsonMax) {
    refuseBody(req, res, jsonMax);
    return;
  }
  const up = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.on('close', () => {
      if (!r.complete) res.destroy();
    });
    if (req.complete) {
      r.pipe(res);
      return;
    }
    // an answer before the whole body (409, 413 of a push...): the API reads no more of it, so neither do we;
    // but a socket closed with the client's bytes still arriving is reset, and the reset can reach the
    // client before the answer it was sent: the body is read and dropped a little longer (lingering close)
    req.unpipe(up);
    req.resume();
    r.pipe(res, { end: false });
    r.on('end', () => linger(req, () => res.end()));
  });
  up.on('error', (err) => {
    // once an answer is on its way, a write error (the API closed after refusing the body) changes nothing
    if (res.headersSent) return;
    res.writeHead(502, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'bad_gateway', error_description: [`the management API is not reachable: ${err.message}`] }));
  });
  req.on('aborted', () => up.destroy());
  if (!json) {
    req.pipe(up);
    return;
  }
  let sent = 0;
  req.on('data', (chunk: Buffer) => {
    if (sent > jsonMax) return;
    const room = jsonMax + 1 - sent;
    sent += Math.min(chunk.length, room);
    if (!up.write(chunk.length > room ? chunk.subarray(0, room) : chunk)) req.pause();
    if (sent > jsonMax) up.end();
  });
  up.on('drain', () => req.resume());
  req.on('end', () => {
    if (sent <= jsonMax) up.end();
  });
}

/** Calls `done` once the client has sent its whole body, stopped, sent DRAIN_BYTES more or waited LINGER_MS. */
function linger(req: IncomingMessage, done: () => void): void {
  if (req.complete || req.destroyed) return done();
  let read = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req.off('data', count);
    done();
  };
  const count = (chunk: Buffer) => {
    read += chunk.length;
    if (read > DRAIN_BYTES) finish();
  };
  const timer = setTimeout(finish, LINGER_MS);
  req.on('data', count);
  req.once('end', finish);
  req.once('close', finish);
}

/** 413 for a JSON body declared over the limit, after reading (and dropping) a bounded part of it. */
function refuseBody(req: IncomingMessage, res: ServerResponse, max: number): void {
  const e = payloadTooLarge(max, 'a JSON body');
  let read = 0;
  const answer = () => {
    if (res.headersSent) return;
    const text = JSON.stringify({ error: e.error, error_description: e.descriptions });
    res.writeHead(e.status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), Connection: 'close' });
    res.write(text);
    linger(req, () => res.end());
  };
  req.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > DRAIN_BYTES) answer();
  });
  req.on('end', answer);
  req.on('error', () => res.destroy());
}

/** A request cut because its body did not arrive in time (its 408 is already answered). */
export class RequestTimeoutError extends Error {
  override name = 'RequestTimeoutError';
}

/** Seconds a push may take: the largest file at the slowest rate allowed, and never less than other bodies. */
export function pushTimeout(cfg: Pick<Config, 'uploadMaxBytes' | 'uploadMinRate' | 'bodyTimeout'>): number {
  return Math.max(cfg.bodyTimeout, cfg.uploadMaxBytes / cfg.uploadMinRate);
}

/**
 * Time limits on request bodies in place of Node's one requestTimeout (5 min for every request, which cut
 * pushes of the 4 GiB allowed): a push gets pushTimeout, any other body `bodyTimeout`. Past it the request
 * is answered 408 and its connection closed. Headers keep Node's headersTimeout. Returns `handler` with
 * the limits in front: one request listener, not two (see shutdown.ts).
 */
export function limitBodies(server: Server, cfg: Config, handler: RequestListener): RequestListener {
  server.requestTimeout = 0;
  const push = pushTimeout(cfg);
  return (req, res) => {
    if (!req.complete && (Number(req.headers['content-length']) > 0 || req.headers['transfer-encoding'])) limitBody(req, res, push, cfg.bodyTimeout);
    handler(req, res);
  };
}

/** Starts the clock of one request's body. */
function limitBody(req: IncomingMessage, res: ServerResponse, push: number, other: number): void {
  const isPush = req.method === 'POST' && PUSH_PATH.test(req.url ?? '');
  const seconds = isPush ? push : other;
  const timer = setTimeout(() => {
    if (req.complete) return;
    const why = `the request body did not arrive within ${seconds} s`;
    // destroyed with an error, the request's body stream fails and its handler cleans up (a push its .part);
    // the answer it then makes has nowhere to go: dropped, like every write after ours
    const cut = () => req.destroy(new RequestTimeoutError(why));
    if (res.headersSent) return cut();
    res.writeHead(408, { 'Content-Type': 'application/json', Connection: 'close' }).end(JSON.stringify({ error: 'request_timeout', error_description: [why] }), cut);
    res.writeHead = () => res;
    res.write = () => true;
    res.end = () => res;
  }, seconds * 1000);
  timer.unref();
  const clear = () => clearTimeout(timer);
  req.once('end', clear);
  res.once('close', clear);
}
