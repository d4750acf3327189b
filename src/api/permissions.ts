// Permissions: a datastore grants some of its offerings to a user (here: the admin user, "me"), with an
// optional end date. Closed offerings (`open: false`) serve only keys whose accesses go through one.

import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { now, type Permission, type State } from '../state/model.js';
import { badRequest, body, byCreation, datastoreOf, find, page, pageQuery, query, route, uuid, type ApiContext } from './http.js';

const endDate = z.iso.datetime({ offset: true });

const createSchema = z.strictObject({
  licence: z.string().min(1).max(1024),
  end_date: endDate.optional(),
  only_oauth: z.literal(false).default(false),
  offerings: z.array(uuid).min(1).max(1000),
});

const patchSchema = z.strictObject({
  licence: z.string().min(1).max(1024).optional(),
  end_date: endDate.nullable().optional(),
  offerings: z.array(uuid).min(1).max(1000).optional(),
});

const listQuery = pageQuery.extend({ offering: uuid.optional() });

function checkOfferings(s: Readonly<State>, datastore: string, ids: string[]): void {
  for (const id of ids) {
    const o = Object.hasOwn(s.offerings, id) ? s.offerings[id] : undefined;
    if (!o || o.datastore !== datastore) throw badRequest(`offerings: ${id} is not an offering of datastore ${datastore}`);
  }
}

export function permissionView(s: Readonly<State>, p: Permission) {
  const { datastore: _d, beneficiary, offerings, ...rest } = p;
  return {
    ...rest,
    beneficiary: { _id: beneficiary },
    offerings: offerings.map((id) => ({ _id: id, layer_name: s.offerings[id]?.layer_name, type: s.offerings[id]?.type, open: s.offerings[id]?.open })),
  };
}

export function permissionRoutes(ctx: ApiContext): Hono {
  const app = new Hono();
  const P = '/api';
  const D = '/datastores/:datastore/permissions';
  const ds = (c: Context) => datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
  const get = (c: Context) => find(ctx.store.state.permissions, 'permission', c.req.param('datastore')!, c.req.param('permission')!);

  route(app, P, { method: 'post', path: D, summary: 'Grant offerings to the admin user (optionally until end_date)', tag: 'permissions', body: createSchema, status: 201 }, async (c) => {
    const d = ds(c);
    const b = await body(c, createSchema);
    const p = await ctx.store.update((s) => {
      checkOfferings(s, d, b.offerings);
      const t = now();
      const p: Permission = { _id: randomUUID(), datastore: d, ...b, offerings: [...new Set(b.offerings)], beneficiary: s.admin_user, creation: t, update: t, tags: {} };
      s.permissions[p._id] = p;
      return p;
    });
    return c.json(permissionView(ctx.store.state, p), 201);
  });

  route(app, P, { method: 'get', path: D, summary: 'List permissions (filter: offering)', tag: 'permissions', query: listQuery }, (c) => {
    const d = ds(c);
    const q = query(c, listQuery);
    const s = ctx.store.state;
    const list = Object.values(s.permissions).filter((p) => p.datastore === d && (!q.offering || p.offerings.includes(q.offering)));
    return page(c, byCreation(list).map((p) => permissionView(s, p)), q);
  });

  route(app, P, { method: 'get', path: `${D}/:permission`, summary: 'A permission', tag: 'permissions' }, (c) => c.json(permissionView(ctx.store.state, get(c))));

  route(app, P, { method: 'patch', path: `${D}/:permission`, summary: 'Change licence, end date (null: none) or offerings', tag: 'permissions', body: patchSchema }, async (c) => {
    const d = ds(c);
    const id = get(c)._id;
    const b = await body(c, patchSchema);
    const p = await ctx.store.update((s) => {
      const p = s.permissions[id];
      if (b.licence !== undefined) p.licence = b.licence;
      if (b.end_date === null) delete p.end_date;
      else if (b.end_date !== undefined) p.end_date = b.end_date;
      if (b.offerings) {
        checkOfferings(s, d, b.offerings);
        p.offerings = [...new Set(b.offerings)];
      }
      p.update = now();
      return p;
    });
    return c.json(permissionView(ctx.store.state, p));
  });

  route(app, P, { method: 'delete', path: `${D}/:permission`, summary: 'Withdraw a permission (the accesses through it go)', tag: 'permissions', status: 204 }, async (c) => {
    const id = get(c)._id;
    await ctx.store.update((s) => {
      delete s.permissions[id];
      for (const k of Object.values(s.keys)) k.accesses = k.accesses.filter((a) => a.permission !== id);
    });
    return c.body(null, 204);
  });

  return app;
}
