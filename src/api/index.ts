// The management API (DESIGN 2): one Hono app under /api with a sub-app per resource, the admin bearer
// token checked in constant time, errors as {"error", "error_description"}, and the OpenAPI description
// written from the routes the sub-apps declare.

import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import { configurationRoutes } from './configurations.js';
import { datastoreRoutes } from './datastores.js';
import { withoutPaths } from '../errors.js';
import { ApiError, JSON_LIMIT_KEY, ROUTES, toApiError, type ApiContext } from './http.js';
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

function openapi(version: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of ROUTES) {
    const path = r.path.replace(/:(\w+)/g, '{$1}');
    const params = [...r.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    if (r.query) {
      const js = z.toJSONSchema(r.query, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, unknown>; required?: string[] };
      for (const [name, schema] of Object.entries(js.properties ?? {})) {
        params.push({ name, in: 'query', required: js.required?.includes(name) ?? false, schema: schema as { type: string } });
      }
    }
    const op: Record<string, unknown> = {
      summary: r.summary,
      tags: [r.tag],
      parameters: params,
      responses: {
        [String(r.status ?? 200)]: { description: 'success' },
        '400': { $ref: '#/components/responses/Error' },
        '401': { $ref: '#/components/responses/Error' },
        '404': { $ref: '#/components/responses/Error' },
        '409': { $ref: '#/components/responses/Error' },
      },
    };
    if (r.body) {
      op.requestBody = { required: true, content: { 'application/json': { schema: z.toJSONSchema(r.body, { io: 'input', unrepresentable: 'any' }) } } };
      // bodies over TUILE_JSON_MAX_BYTES, or slower than TUILE_BODY_TIMEOUT
      op.responses = { ...(op.responses as object), '408': { $ref: '#/components/responses/Error' }, '413': { $ref: '#/components/responses/Error' } };
    }
    if (r.path.endsWith('/data') && r.method === 'post') {
      op.requestBody = {
        required: true,
        content: {
          'multipart/form-data': { schema: { type: 'object', properties: { file: { type: 'string', format: 'binary' } }, required: ['file'] } },
          'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
        },
      };
      op.responses = { ...(op.responses as object), '408': { $ref: '#/components/responses/Error' }, '413': { $ref: '#/components/responses/Error' } };
    }
    (paths[path] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'tuile management API',
      version,
      description: 'Uploads, processings, stored data, configurations, offerings, shaped like the Géoplateforme Entrepôt API.',
    },
    servers: [{ url: '/' }],
    security: [{ admin: [] }],
    components: {
      securitySchemes: { admin: { type: 'http', scheme: 'bearer' } },
      responses: {
        Error: {
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
        },
      },
    },
    paths,
  };
}

const routePatterns = new Map<string, RegExp>();

/** The methods the declared routes have for a path (HEAD with GET), none when no route has the path. */
function allowedMethods(path: string): string[] {
  const out = new Set<string>();
  for (const r of ROUTES) {
    let re = routePatterns.get(r.path);
    if (!re) {
      re = new RegExp(`^${r.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:\w+/g, '[^/]+')}$`);
      routePatterns.set(r.path, re);
    }
    if (re.test(path)) out.add(r.method.toUpperCase());
  }
  if (out.has('GET')) out.add('HEAD');
  return [...out].sort();
}

export function apiApp(ctx: ApiContext, adminToken: string, version = '0.1.0'): Hono {
  const app = new Hono({ strict: false });
  app.onError((err, c) => {
    const e = toApiError(err);
    // a client that went away mid-request is not a server error worth a log line
    if (e.status === 500 && err.message !== 'aborted' && !c.req.raw.signal.aborted) console.error(`tuile: ${c.req.method} ${new URL(c.req.url).pathname}: ${err.stack ?? err.message}`);
    // a body refused for its size is not read further: the connection goes with the answer
    if (e.status === 413) c.header('Connection', 'close');
    // no answer shows the server's paths (a file system error carries them)
    return c.json({ error: e.error, error_description: e.descriptions.map((d) => withoutPaths(d, ctx.config.dataDir)) }, e.status);
  });
  app.get('/api/openapi.json', (c) => c.json(openapi(version)));
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
  for (const sub of [datastoreRoutes, uploadRoutes, processingRoutes, storedDataRoutes, configurationRoutes, offeringRoutes, permissionRoutes, keyRoutes]) app.route('/api', sub(ctx));
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname.replace(/\/+$/, '');
    const allowed = allowedMethods(path);
    if (allowed.length) {
      // a known resource asked with a method it does not have (RFC 9110 15.5.6)
      c.header('Allow', allowed.join(', '));
      return c.json({ error: 'method_not_allowed', error_description: [`${c.req.method} is not a method of ${path}: ${allowed.join(', ')}`] }, 405);
    }
    return c.json({ error: 'not_found', error_description: [`no route for ${c.req.method} ${path}`] }, 404);
  });
  return app;
}
