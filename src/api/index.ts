// The management API (DESIGN 2): one Hono app under /api with a sub-app per resource, the admin bearer
// token checked in constant time, errors as {"error", "error_description"}, and the OpenAPI description
// generated (@hono/zod-openapi) from the routes the sub-apps declare.

import { createHash, timingSafeEqual } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Hono } from 'hono';
import type { BlankEnv } from 'hono/types';
import { configurationRoutes } from './configurations.js';
import { datastoreRoutes } from './datastores.js';
import { withoutPaths } from '../errors.js';
import { ApiError, JSON_LIMIT_KEY, toApiError, type ApiContext } from './http.js';
import { keyRoutes } from './keys.js';
import { offeringRoutes } from './offerings.js';
import { permissionRoutes } from './permissions.js';
import { processingRoutes } from './processings.js';
import { storedDataRoutes } from './stored-data.js';
import { uploadRoutes } from './uploads.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Compares a presented token with the admin token without leaking, by timing, how much of it matched. */
function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The parts of /api/openapi.json that no route declares: the admin token and the error body. */
function describeApi(app: OpenAPIHono<BlankEnv>): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'admin', { type: 'http', scheme: 'bearer' });
  app.openAPIRegistry.registerComponent('responses', 'Error', {
    description: 'an error',
    content: {
      'application/json': {
        schema: {
          type: 'object',
          required: ['error', 'error_description'],
          properties: { error: { type: 'string' }, error_description: { type: 'array', items: { type: 'string' } } },
        },
      },
    },
  });
}

/** The declared routes as patterns with their methods, for the 405 answers. */
function routeTable(app: OpenAPIHono<BlankEnv>): { re: RegExp; method: string }[] {
  return app.openAPIRegistry.definitions.flatMap((d) =>
    d.type === 'route' ? [{ re: new RegExp(`^${d.route.path.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{\w+\}/g, '[^/]+')}$`), method: d.route.method.toUpperCase() }] : [],
  );
}

/** The methods the declared routes have for a path (HEAD with GET), none when no route has the path. */
function allowedMethods(table: { re: RegExp; method: string }[], path: string): string[] {
  const out = new Set<string>();
  for (const r of table) if (r.re.test(path)) out.add(r.method);
  if (out.has('GET')) out.add('HEAD');
  return [...out].sort();
}

export function apiApp(ctx: ApiContext, adminToken: string, version = '0.1.0'): Hono {
  // Hono's own environment type, which the app that mounts this one has
  const app = new OpenAPIHono<BlankEnv>({ strict: false });
  app.onError((err, c) => {
    const e = toApiError(err);
    // a client that went away mid-request is not a server error worth a log line
    if (e.status === 500 && err.message !== 'aborted' && !c.req.raw.signal.aborted) console.error(`tuile: ${c.req.method} ${new URL(c.req.url).pathname}: ${err.stack ?? err.message}`);
    // a body refused for its size is not read further: the connection goes with the answer
    if (e.status === 413) c.header('Connection', 'close');
    // no answer shows the server's paths (a file system error carries them)
    return c.json({ error: e.error, error_description: e.descriptions.map((d) => withoutPaths(d, ctx.config.dataDir)) }, e.status);
  });
  describeApi(app);
  // generated at each request from the sub-apps' registries, merged into this app's as they are mounted below
  app.doc31('/api/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'tuile management API', version, description: 'Uploads, processings, stored data, configurations, offerings, shaped like the Géoplateforme Entrepôt API.' },
    servers: [{ url: '/' }],
    security: [{ admin: [] }],
  });
  app.use('/api/*', async (c, next) => {
    c.set(JSON_LIMIT_KEY as never, ctx.config.jsonMaxBytes as never);
    const auth = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!tokenMatches(m?.[1], adminToken)) {
      c.header('WWW-Authenticate', 'Bearer realm="tuile"');
      throw new ApiError(401, 'unauthorized', ['the management API needs the admin token: Authorization: Bearer <token>']);
    }
    await next();
  });
  // an answer describes what is served: a request whose commits changed the layers answers once every
  // serving process serves them, and a read of the statuses that say so waits for a switch in flight; the
  // switch itself runs outside the state's queue, so that other writes never wait for it
  app.use('/api/*', async (c, next) => {
    const before = ctx.layers.changes();
    await next();
    const after = ctx.layers.changes();
    // (an execution's end, committed by the job runner, changes the layers an injected stored data serves)
    if (after > before || (c.req.method === 'GET' && /\/(offerings|configurations|stored_data|executions)(\/|$)/.test(c.req.path))) await ctx.layers.served(after);
  });
  for (const sub of [datastoreRoutes, uploadRoutes, processingRoutes, storedDataRoutes, configurationRoutes, offeringRoutes, permissionRoutes, keyRoutes]) app.route('/', sub(ctx));
  const table = routeTable(app);
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname.replace(/\/+$/, '');
    const allowed = allowedMethods(table, path);
    if (allowed.length) {
      // a known resource asked with a method it does not have (RFC 9110 15.5.6)
      c.header('Allow', allowed.join(', '));
      return c.json({ error: 'method_not_allowed', error_description: [`${c.req.method} is not a method of ${path}: ${allowed.join(', ')}`] }, 405);
    }
    return c.json({ error: 'not_found', error_description: [`no route for ${c.req.method} ${path}`] }, 404);
  });
  return app;
}
