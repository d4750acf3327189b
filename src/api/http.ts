// What every resource of the management API shares: its context, JSON errors in the Entrepôt's form,
// body validation (zod schemas, which also document the routes), pagination, and the route declaration
// that puts each route into its sub-app's OpenAPI registry.

import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { publicBaseUrl } from '../base-url.js';
import type { Config } from '../config.js';
import { HTTP_STATUS, TuileError } from '../errors.js';
import type { Entity, State } from '../state/model.js';
import type { StateStore } from '../state/store.js';

export interface ApiContext {
  config: Config;
  store: StateStore;
  /** the layers the serving processes serve, which follow the committed state */
  layers: ServedLayers;
  /** answered requests per layer over every serving process: "day\tprotocol\tlayer" -> count */
  layerCounts?(): Promise<Record<string, number>>;
}

/** What the API sees of the hot swap (src/cluster/switch.ts): checks ahead of a switch, and its progress. */
export interface ServedLayers {
  /** opens these pyramid folders' chains in every serving process ahead of a switch: throws when one cannot be served */
  prepare(dirs: string[]): Promise<void>;
  /** commits so far that changed the served layers */
  changes(): number;
  /** resolves once every serving process serves the layers of the `upTo`th change (default: the latest), or was given up on */
  served(upTo?: number): Promise<void>;
}

export class ApiError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 406 | 409 | 413 | 500,
    readonly error: string,
    readonly descriptions: string[],
  ) {
    super(descriptions.join('; '));
  }
}

/** A TuileError with the status of the one table (errors.ts); a server-side one (5xx) as internal_error. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof TuileError) {
    const status = HTTP_STATUS[err.code] as ApiError['status'];
    if (status < 500) return new ApiError(status, err.code, [err.message]);
  }
  return new ApiError(500, 'internal_error', [err instanceof Error ? err.message : String(err)]);
}

export function notFound(kind: string, id: string): ApiError {
  return new ApiError(404, 'not_found', [`${kind} ${id} not found`]);
}

export function conflict(...descriptions: string[]): ApiError {
  return new ApiError(409, 'conflict', descriptions);
}

export function badRequest(...descriptions: string[]): ApiError {
  return new ApiError(400, 'bad_request', descriptions);
}

/** The entity of a datastore, or 404 (ids of another datastore are not found either). */
export function find<T extends Entity & { datastore: string }>(
  table: Record<string, T>,
  kind: string,
  datastore: string,
  id: string,
): T {
  const e = Object.hasOwn(table, id) ? table[id] : undefined;
  if (!e || e.datastore !== datastore) throw notFound(kind, id);
  return e;
}

export function datastoreOf(s: Readonly<State>, id: string) {
  const d = Object.hasOwn(s.datastores, id) ? s.datastores[id] : undefined;
  if (!d) throw notFound('datastore', id);
  return d;
}

function issues(err: z.ZodError): string[] {
  return err.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
}

/** Largest JSON body when the API app sets none (TUILE_JSON_MAX_BYTES). */
const JSON_MAX_BYTES = 2 ** 20;

/** The context variable in which the API app puts the configured limit of JSON bodies. */
export const JSON_LIMIT_KEY = 'jsonMaxBytes';

export function payloadTooLarge(max: number, what: string): ApiError {
  return new ApiError(413, 'payload_too_large', [`${what} may not exceed ${max} bytes`]);
}

/** Past a limit, the rest of a body is still read (up to this much) so that the client gets the 413. */
export const DRAIN_BYTES = 16 * 2 ** 20;

/**
 * Reads what is left of a refused request's body (up to a bound): a client still sending when the
 * answer comes would otherwise see its connection reset instead of the answer.
 */
export async function drainBody(c: Context): Promise<void> {
  const body = c.req.raw.body;
  if (!body || c.req.raw.bodyUsed || body.locked) return;
  let n = 0;
  try {
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      n += chunk.length;
      if (n > DRAIN_BYTES) break;
    }
  } catch {
    // the client went away: nothing to answer
  }
}

/**
 * The body as text, at most `max` bytes: 413 as soon as its declared length or the bytes read go over, so a
 * huge body is never held whole (past V8's string length limit it would end in a 500).
 */
async function boundedText(c: Context, max: number): Promise<string> {
  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await drainBody(c);
    throw payloadTooLarge(max, 'a JSON body');
  }
  const stream = c.req.raw.body;
  if (!stream) return '';
  const chunks: Uint8Array[] = [];
  let n = 0;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      // past the limit, read on (up to DRAIN_BYTES) and drop, so that a client still sending gets the answer
      if (n > max + DRAIN_BYTES) break;
      if (n <= max) chunks.push(value);
    }
  } catch {
    // the client went away: nobody reads the answer
  } finally {
    reader.releaseLock();
  }
  if (n > max) throw payloadTooLarge(max, 'a JSON body');
  return Buffer.concat(chunks).toString('utf8');
}

/** The JSON body, checked against a schema: 400 with every problem listed otherwise. */
export async function body<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  let raw: unknown;
  const max = (c.get(JSON_LIMIT_KEY as never) as number | undefined) ?? JSON_MAX_BYTES;
  const text = await boundedText(c, max);
  if (text.trim() === '') raw = {};
  else {
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw badRequest(`the body is not valid JSON: ${(err as Error).message}`);
    }
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw badRequest(...issues(r.error));
  return r.data;
}

export function query<S extends z.ZodType>(c: Context, schema: S): z.infer<S> {
  const r = schema.safeParse(c.req.query());
  if (!r.success) throw badRequest(...issues(r.error));
  return r.data;
}

const MAX_LIMIT = 100;

export const pageQuery = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  limit: z.coerce.number().int().min(1).max(MAX_LIMIT).default(10),
  sort: z.string().max(64).optional(),
});

/** One page of a list as a bare array, with `Content-Range: first-last/total` (never unbounded). */
export function page<T>(c: Context, items: T[], q: { page: number; limit: number }): Response {
  const first = (q.page - 1) * q.limit;
  const slice = items.slice(first, first + q.limit);
  c.header('Content-Range', slice.length ? `${first}-${first + slice.length - 1}/${items.length}` : `*/${items.length}`);
  return c.json(slice);
}

/** Entities sorted by creation, oldest first, as the Entrepôt lists them. */
export function byCreation<T extends Entity>(list: T[]): T[] {
  return list.sort((a, b) => a.creation.localeCompare(b.creation) || a._id.localeCompare(b._id));
}

/** Tags an entity may carry: a handful in practice; every state write copies them all. */
const MAX_TAGS = 100;

export const tagsSchema = z
  .record(z.string().max(256), z.string().max(1024))
  .refine((t) => Object.keys(t).length <= MAX_TAGS, { message: `at most ${MAX_TAGS} tags` });

/** Tags added to an entity's (PATCH): 400 when the result would carry more than MAX_TAGS. */
export function mergeTags(current: Record<string, string>, added: Record<string, string>): Record<string, string> {
  const merged = { ...current, ...added };
  if (Object.keys(merged).length > MAX_TAGS) throw badRequest(`tags: at most ${MAX_TAGS} tags (this would make ${Object.keys(merged).length})`);
  return merged;
}
export const uuid = z.uuid();

/** The base URL clients reach this server at (base-url.ts: the one the protocols write too). */
export function baseUrl(c: Context, cfg: Config): string {
  return publicBaseUrl(c.req.raw, cfg.publicUrl);
}

interface RouteDoc {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  path: string;
  summary: string;
  tag: string;
  body?: z.ZodObject | z.ZodType;
  query?: z.ZodObject;
  status?: number;
}

type Handler = (c: Context) => Response | Promise<Response>;

const ERROR = { $ref: '#/components/responses/Error' };

/** A file pushed to an upload: multipart (field `file`) or the raw body. */
const FILE_BODY = {
  required: true,
  content: {
    'multipart/form-data': { schema: { type: 'object' as const, properties: { file: { type: 'string' as const, format: 'binary' } }, required: ['file'] } },
    'application/octet-stream': { schema: { type: 'string' as const, format: 'binary' } },
  },
};

/**
 * A route of a resource's sub-app, described in the sub-app's OpenAPI registry (@hono/zod-openapi), from which
 * /api/openapi.json is generated. The handler validates its own body and query (the API's error form, the
 * bounded body read), so the route is registered beside it rather than through `app.openapi`, whose
 * validators would read the body first and answer in another form.
 */
export function route(app: OpenAPIHono, prefix: string, doc: RouteDoc, handler: Handler): void {
  const full = `${prefix}${doc.path}`;
  const names = [...full.matchAll(/:(\w+)/g)].map((m) => m[1]);
  const push = doc.method === 'post' && full.endsWith('/data');
  // bodies over TUILE_JSON_MAX_BYTES, or slower than TUILE_BODY_TIMEOUT
  const bounded: Record<string, typeof ERROR> = doc.body || push ? { '408': ERROR, '413': ERROR } : {};
  app.openAPIRegistry.registerPath(
    createRoute({
      method: doc.method,
      path: full.replace(/:(\w+)/g, '{$1}'),
      summary: doc.summary,
      tags: [doc.tag],
      request: {
        params: names.length ? z.object(Object.fromEntries(names.map((n) => [n, z.string()]))) : undefined,
        query: doc.query,
        body: doc.body ? { required: true, content: { 'application/json': { schema: doc.body } } } : push ? FILE_BODY : undefined,
      },
      responses: { [String(doc.status ?? 200)]: { description: 'success' }, '400': ERROR, '401': ERROR, '404': ERROR, '409': ERROR, ...bounded },
    }),
  );
  app.on(doc.method.toUpperCase(), full, handler);
}
