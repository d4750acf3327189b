// Stored data: the pyramids executions make. Their dependencies (a chained pyramid uses its parent) and
// their use by configurations and offerings keep them from being deleted while needed (409).

import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { dataPaths } from '../config.js';
import { STORED_DATA_STATUSES, now, publishedStoredData, type State, type StoredData } from '../state/model.js';
import { body, byCreation, conflict, datastoreOf, find, mergeTags, page, pageQuery, query, route, tagsSchema, type ApiContext } from './http.js';

const patchSchema = z.strictObject({
  name: z.string().min(1).max(255).optional(),
  tags: tagsSchema.optional(),
});

const listQuery = pageQuery.extend({
  type: z.string().max(64).optional(),
  status: z.enum(STORED_DATA_STATUSES).optional(),
  name: z.string().max(255).optional(),
});

function storedDataView(sd: StoredData) {
  const { datastore: _d, parent: _p, folder: _f, ...rest } = sd;
  return rest;
}

/** Who uses a stored data: chained pyramids, configurations and offerings. */
function usersOf(s: Readonly<State>, id: string) {
  return {
    storedData: Object.values(s.stored_data).filter((x) => x.parent === id),
    configurations: Object.values(s.configurations).filter((c) => c.type_infos.used_data.some((u) => u.stored_data === id)),
    offerings: Object.values(s.offerings).filter((o) => publishedStoredData(o.published).includes(id) || (o.pending && publishedStoredData(o.pending).includes(id))),
    executions: Object.values(s.executions).filter(
      (e) => ['CREATED', 'WAITING', 'PROGRESS'].includes(e.status) && (e.output.stored_data === id || e.inputs.stored_data.includes(id)),
    ),
  };
}

export function storedDataRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const D = '/datastores/:datastore/stored_data';
  const get = (c: Context) => find(ctx.store.state.stored_data, 'stored data', c.req.param('datastore')!, c.req.param('stored_data')!);

  route(app, P, { method: 'get', path: D, summary: 'List stored data (filters: type, status, name)', tag: 'stored_data', query: listQuery }, (c) => {
    const d = datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
    const q = query(c, listQuery);
    const list = Object.values(ctx.store.state.stored_data).filter(
      (x) => x.datastore === d && (!q.type || x.type === q.type) && (!q.status || x.status === q.status) && (!q.name || x.name.includes(q.name)),
    );
    return page(c, byCreation(list).map(storedDataView), q);
  });

  route(app, P, { method: 'get', path: `${D}/:stored_data`, summary: 'A stored data with its type_infos, extent and size', tag: 'stored_data' }, (c) =>
    c.json(storedDataView(get(c))),
  );

  route(app, P, { method: 'patch', path: `${D}/:stored_data`, summary: 'Change name or tags', tag: 'stored_data', body: patchSchema }, async (c) => {
    const id = get(c)._id;
    const b = await body(c, patchSchema);
    const sd = await ctx.store.update((s) => {
      const sd = s.stored_data[id];
      if (b.name !== undefined) sd.name = b.name;
      if (b.tags !== undefined) sd.tags = mergeTags(sd.tags, b.tags);
      sd.update = now();
      return sd;
    });
    return c.json(storedDataView(sd));
  });

  route(app, P, { method: 'get', path: `${D}/:stored_data/dependencies`, summary: 'The stored data it uses and that use it', tag: 'stored_data' }, (c) => {
    const sd = get(c);
    const s = ctx.store.state;
    const ref = (x: StoredData) => ({ _id: x._id, name: x.name, type: x.type, status: x.status });
    const parent = sd.parent ? s.stored_data[sd.parent] : undefined;
    return c.json({ used_by: usersOf(s, sd._id).storedData.map(ref), use: parent ? [ref(parent)] : [] });
  });

  route(app, P, { method: 'delete', path: `${D}/:stored_data`, summary: 'Delete a stored data nothing uses (409 otherwise)', tag: 'stored_data', status: 204 }, async (c) => {
    const id = get(c)._id;
    await ctx.store.update((s) => {
      const u = usersOf(s, id);
      const why: string[] = [];
      if (u.storedData.length) why.push(`used by stored data ${u.storedData.map((x) => x._id).join(', ')}`);
      if (u.configurations.length) why.push(`used by configuration(s) ${u.configurations.map((x) => x._id).join(', ')}`);
      if (u.offerings.length) why.push(`served by offering(s) ${u.offerings.map((x) => x._id).join(', ')}`);
      if (u.executions.length) why.push(`input or output of execution(s) ${u.executions.map((x) => x._id).join(', ')} not finished`);
      if (why.length) throw conflict(`stored data ${id} cannot be deleted:`, ...why);
      delete s.stored_data[id];
    });
    // layers that served it were switched away before (or it was never served): the folder can go
    // its folder and every generation injections made
    const root = dataPaths(ctx.config.dataDir).pyramids;
    const names = existsSync(root) ? await readdir(root) : [];
    await Promise.all(names.filter((n) => n === id || n.startsWith(`${id}.`)).map((n) => rm(join(root, n), { recursive: true, force: true })));
    return c.body(null, 204);
  });

  return app;
}
