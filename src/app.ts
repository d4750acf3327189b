// The HTTP application: one Hono app with a sub-app per protocol, CORS, compression of documents,
// request metrics, /health and /metrics.

import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { compress } from 'hono/compress';
import { cors } from 'hono/cors';
import { mergeSnapshots, renderPrometheus, type MetricsSnapshot } from './metrics.js';
import type { ServerContext } from './protocols/tile.js';
import { endpointView } from './registry.js';
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

/** Where the private endpoint's layers are served: the same protocols under this path. */
export const PRIVATE = '/private';

/** The context of one endpoint's protocols: its layers only, and links under its path. */
function endpointContext(ctx: ServerContext, priv: boolean): ServerContext {
  return { ...ctx, holder: endpointView(ctx.holder, priv), prefix: priv ? PRIVATE : '' };
}

/** The protocols of one endpoint, on their paths. */
function protocolRoutes(app: Hono, ctx: ServerContext): void {
  app.route('/wmts', wmtsRoutes(ctx));
  app.route('/tms', tmsRoutes(ctx));
  app.route('/tiles', xyzRoutes(ctx));
  app.route('/ogcapi', ogcapiRoutes(ctx));
  app.route('/', viewerRoutes(ctx));
}

const TILE_PATHS = [
  /^\/tiles\/[^/]+\/\d+\/\d+\/[^/]+$/,
  /^\/tms\/1\.0\.0\/[^/]+\/\d+\/\d+\/[^/]+$/,
  /^\/wmts\/1\.0\.0\/[^/]+\/[^/]+\/[^/]+\/[^/]+\/\d+\/\d+\.\w+$/,
  /^\/ogcapi\/collections\/[^/]+\/map\/tiles\/[^/]+\/[^/]+\/\d+\/\d+$/,
];

/** The LAYER of a WMTS KVP request (parameter names are case-insensitive). */
function kvpLayer(url: string): string | undefined {
  const q = url.indexOf('?');
  if (q < 0) return undefined;
  for (const [k, v] of new URLSearchParams(url.slice(q + 1))) if (k.toLowerCase() === 'layer') return v;
  return undefined;
}

/** Whether a URL asks for a tile image (any protocol), from its form alone. */
export function isTileRequest(url: string): boolean {
  const start = url.indexOf('/', url.indexOf('//') + 2);
  const q = url.indexOf('?', start);
  let path = q < 0 ? url.slice(start) : url.slice(start, q);
  if (path.startsWith(PRIVATE + '/')) path = path.slice(PRIVATE.length);
  if (path === '/wmts') return q >= 0 && /[?&]request=gettile(&|$)/i.test(url.slice(q));
  return TILE_PATHS.some((re) => re.test(path));
}

export function createApp(ctx: ServerContext, opts: AppOptions = {}): Hono {
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
    exposeHeaders: ['ETag', 'Content-Length', 'Content-Range'],
  });
  const compressMw = compress();
  app.use('*', async (c, next) => {
    if (c.req.method !== 'OPTIONS' && isTileRequest(c.req.url)) return next();
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
  // the fast path knows open-endpoint URLs only: private ones take the application
  const fast = tileFastPath(endpointContext(ctx, false));
  const apiPort = opts.apiPort;
  return (req, res) => {
    if (apiPort && (req.url === '/api' || req.url?.startsWith('/api/') || req.url?.startsWith('/api?'))) {
      proxy(req, res, apiPort);
      return;
    }
    fast(req, res).then(
      (done) => {
        if (!done) void full(req, res);
      },
      (err) => {
        // the path only: a query may carry an apikey, which is never logged
        console.error(`tuile: ${req.method} ${req.url?.split('?')[0]}: ${(err as Error).stack ?? err}`);
        if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: 'internal_error', error_description: [(err as Error).message] }));
      },
    );
  };
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
