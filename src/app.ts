// The HTTP application: one Hono app with a sub-app per protocol, CORS, compression of documents,
// request metrics, /health and /metrics.

import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { compress } from 'hono/compress';
import { cors } from 'hono/cors';
import { mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './metrics.js';
import { CORS_EXPOSE, CORS_HEADERS, type ServerContext } from './protocols/tile.js';
import { tmsRoutes } from './protocols/tms.js';
import { xyzRoutes } from './protocols/xyz.js';
import { wmtsRoutes } from './protocols/wmts.js';
import { ogcapiRoutes } from './protocols/ogcapi.js';
import { viewerRoutes } from './protocols/viewer.js';
import { tileFastPath } from './protocols/fastpath.js';

export interface AppOptions {
  /** metrics of every serving process (cluster); defaults to this process only */
  collectMetrics?: () => Promise<MetricsSnapshot[]>;
  /** the management API, served in this process under /api */
  api?: Hono;
  /** or the port on 127.0.0.1 of the process that serves it (cluster: the primary owns the state) */
  apiPort?: number;
}

const TILE_PATHS = [
  /^\/tiles\/[^/]+\/\d+\/\d+\/[^/]+$/,
  /^\/tms\/1\.0\.0\/[^/]+\/\d+\/\d+\/[^/]+$/,
  /^\/wmts\/1\.0\.0\/[^/]+\/[^/]+\/[^/]+\/[^/]+\/\d+\/\d+\.\w+$/,
  /^\/ogcapi\/collections\/[^/]+\/map\/tiles\/[^/]+\/[^/]+\/\d+\/\d+$/,
];

/** Whether a URL asks for a tile image (any protocol), from its form alone. */
export function isTileRequest(url: string): boolean {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  const q = url.indexOf('?', start);
  const path = q < 0 ? url.slice(start) : url.slice(start, q);
  if (path === '/wmts') return q >= 0 && /[?&]request=gettile(&|$)/i.test(url.slice(q));
  return TILE_PATHS.some((re) => re.test(path));
}

export function createApp(ctx: ServerContext, opts: AppOptions = {}): Hono {
  // not strict: /ogcapi/ and /tms/1.0.0 are the same resources as /ogcapi and /tms/1.0.0/
  const app = new Hono({ strict: false });
  app.use('*', async (c, next) => {
    await next();
    // the matched route pattern, not the URL: bounded label values
    ctx.metrics.request(c.req.routePath || 'unmatched', c.res.status);
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
  app.route('/wmts', wmtsRoutes(ctx));
  app.route('/tms', tmsRoutes(ctx));
  app.route('/tiles', xyzRoutes(ctx));
  app.route('/ogcapi', ogcapiRoutes(ctx));
  app.route('/', viewerRoutes(ctx));
  app.notFound((c) => c.json({ error: 'not_found', error_description: [`no route for ${c.req.method} ${new URL(c.req.url).pathname}`] }, 404));
  app.onError((err, c) => {
    console.error(`tuile: ${c.req.method} ${new URL(c.req.url).pathname}: ${err.stack ?? err.message}`);
    return c.json({ error: 'internal_error', error_description: [err.message] }, 500);
  });
  return app;
}

/**
 * The node:http request listener: tile URLs in path form take the fast path, everything else (and every
 * tile request it declines: errors, KVP, protected layers) the Hono application.
 */
export function createListener(ctx: ServerContext, opts: AppOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  const app = createApp(ctx, opts);
  const full = getRequestListener(app.fetch);
  const fast = tileFastPath(ctx);
  const apiPort = opts.apiPort;
  return (req, res) => {
    if (apiPort && (req.url === '/api' || req.url?.startsWith('/api/') || req.url?.startsWith('/api?'))) {
      proxy(req, res, apiPort);
      return;
    }
    fast(req, res).then(
      (done) => {
        if (!done) void full(req, usualHeaderCase(res));
      },
      (err) => {
        // the path only: a query may carry an apikey, which is never logged
        console.error(`tuile: ${req.method} ${req.url?.split('?')[0]}: ${(err as Error).stack ?? err}`);
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json', ...CORS_HEADERS });
        res.end(JSON.stringify({ error: 'internal_error', error_description: [(err as Error).message] }));
      },
    );
  };
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

/** Passes a request to the API process on 127.0.0.1, streaming both ways (uploads are large). */
function proxy(req: IncomingMessage, res: ServerResponse, port: number): void {
  const up = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', (err) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: 'bad_gateway', error_description: [`the management API is not reachable: ${err.message}`] }));
    } else res.destroy();
  });
  req.on('aborted', () => up.destroy());
  req.pipe(up);
}
