// Processings and their executions: `raster-to-pyramid` turns closed uploads (and optionally one pyramid
// to chain on) into a new stored data. Creating an execution creates its output (CREATED); launching it
// commits WAITING, which the job queue (src/jobs.ts) picks up from the state. `pyramid-fusion` fuses
// pyramids into a new standalone one (src/pyramid/fuse.ts).

import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import {
  EXECUTION_STATUSES,
  PYRAMID_FUSION,
  PYRAMID_TYPE,
  RASTER_TO_PYRAMID,
  created,
  now,
  type Execution,
  type State,
  type StoredData,
} from '../state/model.js';
import { tilesAt } from '../checks.js';
import { badRequest, body, byCreation, conflict, datastoreOf, find, notFound, page, pageQuery, query, route, tagsSchema, uuid, type ApiContext } from './http.js';
import { checkFusion, fusionBbox } from './fusion.js';

const level = z.coerce.number().int().min(0).max(21);

const parametersSchema = z.strictObject({
  tms: z.literal('PM').optional(),
  compression: z.enum(['jpg', 'png', 'webp']).optional(),
  interpolation: z.enum(['nn', 'linear', 'bicubic', 'lanczos']).optional(),
  // pyramid-fusion's own (a processing refuses the parameters it does not list)
  bbox: fusionBbox.optional(),
  parallelization: z.number().int().min(1).max(64).optional(),
  bottom: level.optional(),
  top: level.optional(),
  quality: z.number().int().min(1).max(100).optional(),
  nodata: z.array(z.number().int().min(0).max(255)).min(1).max(4).optional(),
  // tuile's own: 1 or 3 bands of a multispectral delivery, and MIN,MAX pairs mapping 16-bit samples onto 0-255
  bands: z.array(z.number().int().min(1).max(65535)).refine((b) => b.length === 1 || b.length === 3, 'choose 1 or 3 bands').optional(),
  scale: z
    .array(z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo !== hi, 'MIN and MAX must differ'))
    .min(1)
    .max(4)
    .optional(),
});

const createSchema = z.strictObject({
  processing: uuid,
  inputs: z.strictObject({
    upload: z.array(uuid).max(100).default([]),
    stored_data: z.array(uuid).max(100).default([]),
  }),
  output: z.strictObject({
    // a new stored data, or an existing pyramid to update in place (injection)
    stored_data: z.union([
      z.strictObject({
        name: z.string().min(1).max(255),
        storage_tags: z.array(z.string().max(64)).max(16).default([]),
        tags: tagsSchema.default({}),
      }),
      z.strictObject({ _id: uuid }),
      // the injection tutorial writes `id`
      z.strictObject({ id: uuid }).transform((o) => ({ _id: o.id })),
    ]),
  }),
  parameters: parametersSchema.default({}),
});

const listQuery = pageQuery.extend({ status: z.enum(EXECUTION_STATUSES).optional() });

const FORMAT_OF_COMPRESSION: Record<string, string> = { JPG: 'jpg', PNG: 'png', WEBP: 'webp' };

/** The processings this server runs, as the Entrepôt lists them: one entry each. */
const PROCESSINGS: readonly { _id: string; name: string; technical_name: string; parameters: readonly { name: string }[] }[] = [RASTER_TO_PYRAMID, PYRAMID_FUSION];

function processingOf(id: string) {
  return PROCESSINGS.find((p) => p._id === id);
}

function executionView(s: Readonly<State>, e: Execution) {
  const ref = (kind: 'uploads' | 'stored_data', id: string) => {
    const x = (s[kind] as Record<string, { name: string; type: string; status: string; srs: string } | undefined>)[id];
    return { _id: id, name: x?.name, type: x?.type, status: x?.status ?? 'DELETED', srs: x?.srs };
  };
  const { logs: _l, datastore: _d, folder: _f, ...rest } = e;
  const p = processingOf(e.processing);
  return {
    ...rest,
    processing: { _id: e.processing, name: p?.name, technical_name: p?.technical_name },
    inputs: { upload: e.inputs.upload.map((u) => ref('uploads', u)), stored_data: e.inputs.stored_data.map((d) => ref('stored_data', d)) },
    output: { stored_data: ref('stored_data', e.output.stored_data) },
  };
}

export function processingRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const D = '/datastores/:datastore/processings';
  const ds = (c: Context) => datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
  const get = (c: Context) => find(ctx.store.state.executions, 'execution', c.req.param('datastore')!, c.req.param('execution')!);

  route(app, P, { method: 'get', path: D, summary: 'The processings this server runs', tag: 'processings', query: pageQuery }, (c) => {
    ds(c);
    return page(c, [...PROCESSINGS], query(c, pageQuery));
  });

  route(app, P, { method: 'get', path: `${D}/executions`, summary: 'List executions (filter: status)', tag: 'processings', query: listQuery }, (c) => {
    const d = ds(c);
    const q = query(c, listQuery);
    const s = ctx.store.state;
    const list = Object.values(s.executions).filter((e) => e.datastore === d && (!q.status || e.status === q.status));
    return page(c, byCreation(list).map((e) => executionView(s, e)), q);
  });

  route(app, P, { method: 'get', path: `${D}/:processing`, summary: 'A processing', tag: 'processings' }, (c) => {
    ds(c);
    const p = processingOf(c.req.param('processing')!);
    if (!p) throw notFound('processing', c.req.param('processing')!);
    return c.json(p);
  });

  route(
    app,
    P,
    { method: 'post', path: `${D}/executions`, summary: 'Create an execution and its output stored data (CREATED)', tag: 'processings', body: createSchema, status: 201 },
    async (c) => {
      const d = ds(c);
      const b = await body(c, createSchema);
      const e = await ctx.store.update((s) => {
        const proc = processingOf(b.processing);
        if (!proc) throw badRequest(`processing: no processing ${b.processing}`);
        for (const k of Object.keys(b.parameters)) if (!proc.parameters.some((x) => x.name === k)) throw badRequest(`parameters.${k}: not a parameter of ${proc.technical_name}`);
        const fusion = proc._id === PYRAMID_FUSION._id;
        if (fusion) checkFusion(s, d, b);
        else if (b.inputs.upload.length === 0) throw badRequest('inputs.upload: raster-to-pyramid needs at least one upload');
        else if (b.inputs.stored_data.length > 1) throw badRequest('inputs.stored_data: raster-to-pyramid chains on one pyramid at most');
        b.inputs.upload.forEach((u, i) => {
          const up = Object.hasOwn(s.uploads, u) ? s.uploads[u] : undefined;
          if (!up || up.datastore !== d) throw badRequest(`inputs.upload.${i}: no upload ${u} in this datastore`);
          if (up.status !== 'CLOSED') throw badRequest(`inputs.upload.${i}: upload ${u} is ${up.status}, not CLOSED`);
        });
        const p = b.parameters;
        // refused before it runs: a bottom level that would make more tiles than allowed
        const prints = b.inputs.upload.map((u) => s.uploads[u].footprint).filter((f) => f !== undefined);
        if (prints.length > 0) {
          const box = { minX: Math.min(...prints.map((f) => f.minX)), minY: Math.min(...prints.map((f) => f.minY)), maxX: Math.max(...prints.map((f) => f.maxX)), maxY: Math.max(...prints.map((f) => f.maxY)) };
          const bottom = p.bottom ?? Math.max(...prints.map((f) => f.level));
          const n = tilesAt(box, bottom);
          if (n > ctx.config.maxTiles) throw badRequest(`parameters.bottom: level ${bottom} makes ${n} tiles, over the limit of ${ctx.config.maxTiles}`);
        }
        if (p.bottom !== undefined && p.top !== undefined && p.top > p.bottom) throw badRequest(`parameters: top (${p.top}) must not be below bottom (${p.bottom})`);
        const out = b.output.stored_data;
        const injectInto = '_id' in out ? out._id : undefined;
        if (injectInto && b.inputs.stored_data.some((x) => x !== injectInto)) {
          throw badRequest('inputs.stored_data: an injection updates its output; it chains on nothing else');
        }
        const parentId = fusion ? undefined : (injectInto ?? b.inputs.stored_data[0]);
        if (parentId) {
          const field = injectInto ? 'output.stored_data._id' : 'inputs.stored_data.0';
          const parent = Object.hasOwn(s.stored_data, parentId) ? s.stored_data[parentId] : undefined;
          if (!parent || parent.datastore !== d) throw badRequest(`${field}: no stored data ${parentId} in this datastore`);
          if (parent.type !== PYRAMID_TYPE || parent.status !== 'GENERATED' || !parent.type_infos) {
            throw badRequest(`${field}: stored data ${parentId} is ${parent.status}, not a GENERATED pyramid`);
          }
          const ti = parent.type_infos;
          const fmt = FORMAT_OF_COMPRESSION[ti.compression];
          if (p.compression && p.compression !== fmt) throw badRequest(`parameters.compression: a chained pyramid keeps its parent's compression (${fmt})`);
          const levels = ti.levels.map(Number);
          if (p.bottom !== undefined && p.bottom !== Math.max(...levels)) throw badRequest(`parameters.bottom: a chained pyramid keeps its parent's bottom level (${Math.max(...levels)})`);
          if (p.top !== undefined && p.top !== Math.min(...levels)) throw badRequest(`parameters.top: a chained pyramid keeps its parent's top level (${Math.min(...levels)})`);
        }
        let outputId: string;
        if ('_id' in out) {
          outputId = out._id;
          const busy = Object.values(s.executions).find((x) => x.output.stored_data === outputId && ['CREATED', 'WAITING', 'PROGRESS'].includes(x.status));
          if (busy) throw conflict(`stored data ${outputId} is already the output of execution ${busy._id}`);
        } else {
          const sd: StoredData = {
            _id: randomUUID(),
            datastore: d,
            name: out.name,
            type: PYRAMID_TYPE,
            status: 'CREATED',
            srs: 'EPSG:3857',
            contact: ctx.config.contact,
            storage: { type: 'FILESYSTEM', labels: out.storage_tags },
            ...created(s.admin_user),
            tags: out.tags,
          };
          s.stored_data[sd._id] = sd;
          outputId = sd._id;
        }
        const e: Execution = {
          _id: randomUUID(),
          datastore: d,
          processing: b.processing,
          status: 'CREATED',
          inputs: { upload: b.inputs.upload, stored_data: b.inputs.stored_data },
          output: { stored_data: outputId },
          ...(injectInto ? { inject: true } : {}),
          parameters: { ...p },
          logs: [],
          ...created(s.admin_user),
        };
        s.executions[e._id] = e;
        return e;
      });
      return c.json(executionView(ctx.store.state, e), 201);
    },
  );

  route(app, P, { method: 'get', path: `${D}/executions/:execution`, summary: 'An execution, with its progress', tag: 'processings' }, (c) =>
    c.json(executionView(ctx.store.state, get(c))),
  );

  route(app, P, { method: 'post', path: `${D}/executions/:execution/launch`, summary: 'Launch (WAITING, then PROGRESS, SUCCESS or FAILURE)', tag: 'processings' }, async (c) => {
    const id = get(c)._id;
    const e = await ctx.store.update((s) => {
      const e = s.executions[id];
      if (e.status !== 'CREATED') throw conflict(`execution ${id} is ${e.status}: only a CREATED execution can be launched`);
      for (const u of e.inputs.upload) {
        if (s.uploads[u]?.status !== 'CLOSED') throw conflict(`upload ${u} is no longer CLOSED`);
      }
      e.status = 'WAITING';
      e.launch = now();
      e.update = e.launch;
      e.last_event = { title: 'launched', date: e.launch, initiator: { _id: s.admin_user } };
      e.logs.push(`${e.launch} WAITING: launched`);
      return e;
    });
    return c.json(executionView(ctx.store.state, e));
  });

  route(app, P, { method: 'post', path: `${D}/executions/:execution/abort`, summary: 'Abort an execution not finished (never launched, waiting or running)', tag: 'processings' }, async (c) => {
    const id = get(c)._id;
    const e = await ctx.store.update((s) => {
      const e = s.executions[id];
      if (!['CREATED', 'WAITING', 'PROGRESS'].includes(e.status)) throw conflict(`execution ${id} is ${e.status}: it has already ended`);
      const t = now();
      const running = e.status === 'PROGRESS';
      e.status = 'ABORTED';
      e.update = t;
      e.last_event = { title: 'aborted', date: t, initiator: { _id: s.admin_user } };
      e.logs.push(`${t} ABORTED: on request`);
      // a running build is stopped by the job queue, which then marks its output
      if (!running) {
        e.finish = t;
        const sd = s.stored_data[e.output.stored_data];
        if (sd && !e.inject) sd.status = 'UNSTABLE';
      }
      return e;
    });
    return c.json(executionView(ctx.store.state, e));
  });

  route(
    app,
    P,
    { method: 'delete', path: `${D}/executions/:execution`, summary: 'Delete an execution never launched (its output with it) or ended; its inputs are free again', tag: 'processings', status: 204 },
    async (c) => {
      const id = get(c)._id;
      await ctx.store.update((s) => {
        const e = s.executions[id];
        if (e.status === 'WAITING' || e.status === 'PROGRESS') throw conflict(`execution ${id} is ${e.status}: abort it first`);
        // the stored data it was to make, never made
        const sd = s.stored_data[e.output.stored_data];
        if (e.status === 'CREATED' && !e.inject && sd?.status === 'CREATED') delete s.stored_data[sd._id];
        delete s.executions[id];
      });
      return c.body(null, 204);
    },
  );

  route(app, P, { method: 'get', path: `${D}/executions/:execution/logs`, summary: 'The log lines of an execution', tag: 'processings', query: pageQuery }, (c) => {
    const e = get(c);
    return page(c, e.logs, query(c, pageQuery.extend({ limit: pageQuery.shape.limit.default(100) })));
  });

  return app;
}
