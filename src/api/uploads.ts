// Uploads: a delivery's files pushed into a folder of their own (streamed to disk, bounded in size,
// confined to the upload), then closed and checked: readable GeoTIFF, georeferenced, in the declared CRS,
// of a sane size. CLOSED when every check passes, UNSTABLE with the check logs otherwise.

import { randomUUID } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import busboy from 'busboy';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { dataPaths } from '../config.js';
import { errorMessage, withoutPaths } from '../errors.js';
import { checkIsolated } from '../checks.js';
import { parseCrs } from '../geo/crs.js';
import { uploadStorage } from '../upload-storage.js';
import { RASTER_CHECK, SERVER, UPLOAD_STATUSES, now, type CheckRun, type Upload } from '../state/model.js';
import {
  badRequest,
  body,
  byCreation,
  conflict,
  DRAIN_BYTES,
  datastoreOf,
  drainBody,
  find,
  mergeTags,
  notFound,
  page,
  pageQuery,
  payloadTooLarge,
  query,
  route,
  tagsSchema,
  type ApiContext,
} from './http.js';

const createSchema = z.strictObject({
  name: z.string().min(1).max(255),
  description: z.string().max(4096).default(''),
  type: z.literal('RASTER'),
  srs: z.string().min(1).max(255),
  tags: tagsSchema.default({}),
});

const patchSchema = z.strictObject({
  name: z.string().min(1).max(255).optional(),
  description: z.string().max(4096).optional(),
  tags: tagsSchema.optional(),
});

const listQuery = pageQuery.extend({
  status: z.enum(UPLOAD_STATUSES).optional(),
  type: z.string().max(64).optional(),
  name: z.string().max(255).optional(),
});

const pathQuery = z.object({ path: z.string().min(1).max(1024) });

/** A path inside an upload: relative, no `..`, no empty or dot segments, printable. */
function uploadPath(p: string): string {
  if (/[\0-\x1f\\]/.test(p)) throw badRequest(`path '${p.slice(0, 200)}': control characters and backslashes are not allowed`);
  const parts = p.split('/').filter((s) => s !== '');
  if (p.startsWith('/') || parts.length === 0 || parts.some((s) => s === '..' || s === '.')) {
    throw badRequest(`path '${p.slice(0, 200)}' must be relative to the upload, without '.' or '..'`);
  }
  if (parts.some((s) => s.length > 200)) throw badRequest('path segments are limited to 200 characters');
  if (p.length > 1024) throw badRequest('paths are limited to 1024 characters');
  return posix.join(...parts);
}

function uploadView(u: Upload) {
  const { checks: _checks, datastore: _d, footprint: _f, ...rest } = u;
  return rest;
}

function root(ctx: ApiContext, u: Upload): string {
  return join(dataPaths(ctx.config.dataDir).upload(u._id), 'data');
}

/**
 * Pushes in flight per upload, and the uploads whose close or delete is being committed. Both are decided in
 * the request's own tick, ahead of the state commit: a push that started is waited for by nothing, so a close
 * or a delete is refused while one is in flight, and a push is refused once a close or delete has begun
 * (otherwise its file would land, unchecked, in a CLOSED upload, or in a folder being removed).
 */
const pushes = new Map<string, number>();
const sealing = new Set<string>();

function refuseWhilePushing(id: string, what: string): void {
  const n = pushes.get(id) ?? 0;
  if (n > 0) throw conflict(`upload ${id} has ${n} push(es) in flight: ${what} it once they are answered`);
  if (sealing.has(id)) throw conflict(`upload ${id} is being closed or deleted`);
}

/**
 * Copies a stream into a file, at most `max` bytes. Past the limit it keeps reading (and dropping) what
 * comes, so the request ends normally and its 413 is read; a body that goes on much longer is cut.
 */
async function copyBounded(input: AsyncIterable<Buffer>, file: string, max: number, counted: { bytes: number }): Promise<void> {
  const ws = createWriteStream(file);
  const failed = new Promise<never>((_, rej) => ws.once('error', rej));
  failed.catch(() => {});
  let over = false;
  try {
    for await (const chunk of input) {
      counted.bytes += chunk.length;
      if (!over && counted.bytes > max) over = true;
      if (over) {
        if (counted.bytes > max + DRAIN_BYTES) break;
        continue;
      }
      if (!ws.write(chunk)) await Promise.race([once(ws, 'drain'), failed]);
    }
  } finally {
    ws.end();
    await Promise.race([finished(ws), failed]).catch(() => {});
  }
  if (over) throw payloadTooLarge(max, 'a file');
}

/** Streams the request's file (multipart field `file`, or the raw body) to `target`, through a temporary file. */
async function receive(c: Context, target: string, max: number): Promise<number> {
  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > max + DRAIN_BYTES) throw payloadTooLarge(max, 'a file');
  const stream = c.req.raw.body;
  if (!stream) throw badRequest('no file: send it as the multipart field "file" or as the body');
  const tmp = join(dirname(target), `.${randomUUID().slice(0, 8)}.part`);
  const counted = { bytes: 0 };
  try {
    if (existsSync(target) && (await stat(target)).isDirectory()) throw conflict('a folder of the upload already has this path');
    await mkdir(dirname(target), { recursive: true });
    const type = c.req.header('content-type') ?? '';
    const input = Readable.fromWeb(stream as import('node:stream/web').ReadableStream);
    if (/^multipart\/form-data/i.test(type)) {
      await new Promise<void>((resolve, reject) => {
        let seen = false;
        let bb: busboy.Busboy;
        try {
          bb = busboy({ headers: { 'content-type': type }, limits: { files: 1, fields: 16, fieldSize: 64 * 1024 } });
        } catch (err) {
          reject(badRequest(`multipart body: ${errorMessage(err)}`));
          return;
        }
        const writes: Promise<void>[] = [];
        bb.on('file', (field, file) => {
          if (field !== 'file' || seen) {
            file.resume();
            return;
          }
          seen = true;
          const w = copyBounded(file, tmp, max, counted);
          w.catch((err) => {
            // the rest of the part is dropped and busboy goes on to the end; a body far too long is cut
            if (counted.bytes > max + DRAIN_BYTES) {
              input.destroy();
              reject(err);
            } else file.resume();
          });
          writes.push(w);
        });
        bb.on('error', (err) => reject(badRequest(`multipart body: ${errorMessage(err)}`)));
        bb.on('close', () => {
          if (!seen) reject(badRequest('multipart body without a "file" field'));
          else Promise.all(writes).then(() => resolve(), reject);
        });
        input.on('error', reject);
        input.pipe(bb);
      });
    } else {
      await copyBounded(input, tmp, max, counted);
    }
    await rename(tmp, target);
    return counted.bytes;
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw fileError(err);
  }
}

/** File system refusals as the client's mistakes, without the server's paths. */
function fileError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') return conflict('a file of the upload is in the way of this path (a file cannot also be a folder)');
  if (code === 'ENAMETOOLONG') return badRequest('the path is too long');
  return err;
}

/** A node of an upload's tree, typed as the Entrepôt types them. */
interface TreeNode {
  name: string;
  type: 'FILE' | 'DIRECTORY';
  size?: number;
  children?: TreeNode[];
}

async function tree(dir: string): Promise<TreeNode[]> {
  if (!existsSync(dir)) return [];
  const out: TreeNode[] = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.endsWith('.part')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push({ name: e.name, type: 'DIRECTORY', children: await tree(p) });
    else if (e.isFile()) out.push({ name: e.name, type: 'FILE', size: (await stat(p)).size });
  }
  return out;
}

async function dirSize(dir: string): Promise<number> {
  const sum = (nodes: TreeNode[]): number => nodes.reduce((n, t) => n + (t.size ?? 0) + sum(t.children ?? []), 0);
  return sum(await tree(dir));
}

/** Runs the checks of a CHECKING upload (in a child process: src/checks.ts) and commits CLOSED or UNSTABLE. */
async function runChecks(ctx: ApiContext, id: string): Promise<void> {
  if (checking.has(id)) return;
  checking.add(id);
  try {
    // on a shared state, one node checks an upload: the one that took it, until its heartbeat stops
    if (ctx.store.state.uploads[id]?.status === 'CHECKING' && (await ctx.store.claimCheck(id))) await check(ctx, id);
  } finally {
    checking.delete(id);
  }
}

/** The uploads this process is checking (its own claim would let it take them twice). */
const checking = new Set<string>();

/** How often a node on a shared state looks for checks of nodes that stopped. */
const RECHECK_MS = 2000;
/** A check run younger than this is left to the node that closed it (a dead node's heartbeat is stale after 10 s). */
const SETTLED_MS = 10_000;

async function check(ctx: ApiContext, id: string): Promise<void> {
  const u = ctx.store.state.uploads[id];
  if (!u || u.status !== 'CHECKING') return;
  const { config } = ctx;
  // another node may have received the files: the check reads them here
  const unfetched = await uploadStorage().fetch(id, root(ctx, u)).then(() => null, errorMessage);
  const { ok, logs: lines, footprint } = unfetched
    ? { ok: false, logs: [unfetched], footprint: undefined }
    : await checkIsolated(
        { root: root(ctx, u), srs: u.srs, maxPixels: config.maxPixels, maxTiles: config.maxTiles },
        { timeoutMs: config.checkTimeout * 1000, memoryMB: config.checkMemoryMB },
      );
  // a check log is shown to API users: no server path in it
  const logs = lines.map((l) => withoutPaths(l, config.dataDir));
  const size = await dirSize(root(ctx, u));
  await ctx.store.update((s) => {
    const cur = s.uploads[id];
    if (!cur || cur.status !== 'CHECKING') return;
    const t = now();
    const run = cur.checks[cur.checks.length - 1];
    if (run) {
      run.status = ok ? 'SUCCESS' : 'FAILURE';
      run.finish = t;
      run.logs = logs;
    }
    cur.status = ok ? 'CLOSED' : 'UNSTABLE';
    cur.size = size;
    cur.footprint = ok ? footprint : undefined;
    cur.update = t;
    cur.last_event = { title: ok ? 'checks passed' : 'checks failed', date: t, initiator: SERVER };
  });
}

export function uploadRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const U = '/datastores/:datastore/uploads';
  const get = (c: Context) => find(ctx.store.state.uploads, 'upload', c.req.param('datastore')!, c.req.param('upload')!);

  route(app, P, { method: 'post', path: U, summary: 'Create an upload (OPEN)', tag: 'uploads', body: createSchema, status: 201 }, async (c) => {
    const d = datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
    const b = await body(c, createSchema);
    try {
      parseCrs(b.srs);
    } catch (err) {
      throw badRequest(`srs: ${errorMessage(err)}`);
    }
    const u = await ctx.store.update((s) => {
      const t = now();
      const u: Upload = { _id: randomUUID(), datastore: d, ...b, status: 'OPEN', contact: ctx.config.contact, size: 0, checks: [], creation: t, update: t, last_event: { title: 'creation', date: t, initiator: { _id: s.admin_user } } };
      s.uploads[u._id] = u;
      return u;
    });
    return c.json(uploadView(u), 201);
  });

  route(app, P, { method: 'get', path: U, summary: 'List uploads (filters: status, type, name)', tag: 'uploads', query: listQuery }, (c) => {
    const d = datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
    const q = query(c, listQuery);
    const list = Object.values(ctx.store.state.uploads).filter(
      (u) => u.datastore === d && (!q.status || u.status === q.status) && (!q.type || u.type === q.type) && (!q.name || u.name.includes(q.name)),
    );
    return page(c, byCreation(list).map(uploadView), q);
  });

  route(app, P, { method: 'get', path: `${U}/:upload`, summary: 'An upload', tag: 'uploads' }, (c) => c.json(uploadView(get(c))));

  route(app, P, { method: 'patch', path: `${U}/:upload`, summary: 'Change name, description or tags', tag: 'uploads', body: patchSchema }, async (c) => {
    const id = get(c)._id;
    const b = await body(c, patchSchema);
    const u = await ctx.store.update((s) => {
      const u = s.uploads[id];
      if (b.name !== undefined) u.name = b.name;
      if (b.description !== undefined) u.description = b.description;
      if (b.tags !== undefined) u.tags = mergeTags(u.tags, b.tags);
      u.update = now();
      return u;
    });
    return c.json(uploadView(u));
  });

  route(app, P, { method: 'delete', path: `${U}/:upload`, summary: 'Delete an upload and its files (409 while a push is in flight)', tag: 'uploads', status: 204 }, async (c) => {
    const id = get(c)._id;
    refuseWhilePushing(id, 'delete');
    sealing.add(id);
    try {
      await ctx.store.update((s) => {
        if (!s.uploads[id]) throw notFound('upload', id);
        const using = Object.values(s.executions).filter((e) => e.inputs.upload.includes(id) && ['CREATED', 'WAITING', 'PROGRESS'].includes(e.status));
        if (using.length > 0) throw conflict(`upload ${id} is an input of execution(s) ${using.map((e) => e._id).join(', ')} that have not run`);
        delete s.uploads[id];
      });
      await rm(dataPaths(ctx.config.dataDir).upload(id), { recursive: true, force: true });
      await uploadStorage().removed(id);
    } finally {
      sealing.delete(id);
    }
    return c.body(null, 204);
  });

  route(app, P, { method: 'post', path: `${U}/:upload/data`, summary: 'Push a file (multipart field "file" or the raw body) to ?path=', tag: 'uploads', query: pathQuery }, async (c) => {
    let size: number;
    let u: Upload;
    let path: string;
    let counted = false;
    try {
      u = get(c);
      if (u.status !== 'OPEN') throw conflict(`upload ${u._id} is ${u.status}: files can be pushed only while it is OPEN`);
      if (sealing.has(u._id)) throw conflict(`upload ${u._id} is being closed or deleted: files can be pushed only while it is OPEN`);
      path = uploadPath(query(c, pathQuery).path);
      pushes.set(u._id, (pushes.get(u._id) ?? 0) + 1);
      counted = true;
      const target = join(root(ctx, u), path);
      size = await receive(c, target, ctx.config.uploadMaxBytes);
      // in the store before the answer, or not at all: no node may later miss a file the client saw accepted
      await uploadStorage()
        .saved(u._id, path, target)
        .catch(async (err) => {
          await rm(target, { force: true });
          throw err;
        });
    } catch (err) {
      await drainBody(c);
      throw err;
    } finally {
      if (counted) {
        const left = pushes.get(u!._id)! - 1;
        if (left > 0) pushes.set(u!._id, left);
        else pushes.delete(u!._id);
      }
    }
    const total = await dirSize(root(ctx, u));
    await ctx.store.update((s) => {
      const cur = s.uploads[u._id];
      if (!cur) return;
      cur.size = total;
      cur.update = now();
    });
    return c.json({ path, size });
  });

  route(app, P, { method: 'delete', path: `${U}/:upload/data`, summary: 'Remove the file at ?path=', tag: 'uploads', query: pathQuery, status: 204 }, async (c) => {
    const u = get(c);
    if (u.status !== 'OPEN' || sealing.has(u._id)) throw conflict(`upload ${u._id} is ${sealing.has(u._id) ? 'being closed or deleted' : u.status}: files can be removed only while it is OPEN`);
    const path = uploadPath(query(c, pathQuery).path);
    const target = join(root(ctx, u), path);
    if (!existsSync(target)) throw notFound('file', path);
    await rm(target, { recursive: true, force: true });
    await uploadStorage().removed(u._id, path);
    return c.body(null, 204);
  });

  route(app, P, { method: 'get', path: `${U}/:upload/tree`, summary: 'The files of an upload', tag: 'uploads' }, async (c) => c.json(await tree(root(ctx, get(c)))));

  route(app, P, { method: 'post', path: `${U}/:upload/close`, summary: 'Close and check (CHECKING, then CLOSED or UNSTABLE; 409 while a push is in flight)', tag: 'uploads' }, async (c) => {
    const id = get(c)._id;
    refuseWhilePushing(id, 'close');
    sealing.add(id);
    let u: Upload;
    try {
      u = await ctx.store.update((s) => {
        const u = s.uploads[id];
        if (!u) throw notFound('upload', id);
        if (u.status !== 'OPEN') throw conflict(`upload ${id} is ${u.status}, not OPEN`);
        const t = now();
        u.status = 'CHECKING';
        u.update = t;
        u.last_event = { title: 'closing', date: t, initiator: { _id: s.admin_user } };
        u.checks.push({ _id: randomUUID(), check: RASTER_CHECK, status: 'PROGRESS', start: t, logs: [] });
        return u;
      });
    } finally {
      sealing.delete(id);
    }
    void runChecks(ctx, id).catch((err) => console.error(`tuile: checks of upload ${id}: ${errorMessage(err)}`));
    return c.json(uploadView(u));
  });

  route(app, P, { method: 'post', path: `${U}/:upload/open`, summary: 'Open a closed or unstable upload again', tag: 'uploads' }, async (c) => {
    const id = get(c)._id;
    const u = await ctx.store.update((s) => {
      const u = s.uploads[id];
      if (u.status !== 'CLOSED' && u.status !== 'UNSTABLE') throw conflict(`upload ${id} is ${u.status}: only CLOSED or UNSTABLE uploads open again`);
      u.status = 'OPEN';
      u.update = now();
      u.last_event = { title: 'reopened', date: u.update, initiator: { _id: s.admin_user } };
      return u;
    });
    return c.json(uploadView(u));
  });

  route(app, P, { method: 'get', path: `${U}/:upload/checks`, summary: 'The checks run on an upload', tag: 'uploads' }, (c) => {
    const u = get(c);
    const view = (r: CheckRun) => ({ _id: r._id, check: r.check, status: r.status, start: r.start, finish: r.finish });
    return c.json({
      asked: u.checks.filter((r) => r.status === 'WAITING').map(view),
      in_progress: u.checks.filter((r) => r.status === 'PROGRESS').map(view),
      passed: u.checks.filter((r) => r.status === 'SUCCESS').map(view),
      failed: u.checks.filter((r) => r.status === 'FAILURE').map(view),
    });
  });

  route(app, P, { method: 'get', path: '/datastores/:datastore/checks/executions/:check', summary: 'A check run', tag: 'uploads' }, (c) => {
    const d = datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
    const id = c.req.param('check')!;
    for (const u of Object.values(ctx.store.state.uploads)) {
      const r = u.datastore === d ? u.checks.find((x) => x._id === id) : undefined;
      if (r) return c.json({ _id: r._id, check: r.check, status: r.status, start: r.start, finish: r.finish, upload: { _id: u._id, name: u.name } });
    }
    throw notFound('check execution', id);
  });

  route(app, P, { method: 'get', path: '/datastores/:datastore/checks/executions/:check/logs', summary: 'The log lines of a check run', tag: 'uploads' }, (c) => {
    const d = datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
    const id = c.req.param('check')!;
    for (const u of Object.values(ctx.store.state.uploads)) {
      const r = u.datastore === d ? u.checks.find((x) => x._id === id) : undefined;
      if (r) return c.json(r.logs);
    }
    throw notFound('check execution', id);
  });

  return app;
}

/**
 * After a restart: uploads caught CHECKING are checked again, in the background (start-up never waits on
 * them). On a shared state, only those this node was checking, or no live node is: and every few seconds
 * again, for the checks of nodes that die later. Returns what stops that.
 */
export function recoverChecks(ctx: ApiContext): () => void {
  const recheck = (settled = 0) => {
    for (const u of Object.values(ctx.store.state.uploads)) {
      if (u.status !== 'CHECKING') continue;
      // a run just begun is its closing node's to claim: taking it first would check it where it was not closed
      const start = Date.parse(u.checks.at(-1)?.start ?? '');
      if (settled && Date.now() - start < settled) continue;
      void runChecks(ctx, u._id).catch((err) => console.error(`tuile: checks of upload ${u._id}: ${errorMessage(err)}`));
    }
  };
  recheck();
  if (!ctx.store.shared) return () => {};
  const timer = setInterval(() => recheck(SETTLED_MS), RECHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
