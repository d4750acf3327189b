// Permissions, in the Entrepôt's shape: a datastore grants some of its offerings to users (here the one
// user there is, the admin, "me") with a licence and an optional end date. Creation names the
// beneficiaries and answers one permission each, as an array. Closed offerings (`open: false`) serve only
// keys whose accesses go through a permission. `GET /users/me/permissions` is the beneficiary's side.

import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { created, now, type Permission, type State } from '../state/model.js';
import { badRequest, body, byCreation, datastoreOf, find, notFound, page, pageQuery, query, route, uuid, type ApiContext } from './http.js';

const endDate = z.iso.datetime({ offset: true });

const createSchema = z.strictObject({
  licence: z.string().min(1).max(1024),
  end_date: endDate.optional(),
  only_oauth: z.boolean().default(false),
  offerings: z.array(uuid).min(1).max(1000),
  // ACCOUNT: `users` are user ids; COMMUNITY: `communities` (or, as the platform's examples write it, `users`) are community ids
  type: z.enum(['ACCOUNT', 'COMMUNITY']).default('ACCOUNT'),
  users: z.array(uuid).min(1).max(1000).optional(),
  communities: z.array(uuid).min(1).max(1000).optional(),
});

const patchSchema = z.strictObject({
  licence: z.string().min(1).max(1024).optional(),
  end_date: endDate.nullable().optional(),
  only_oauth: z.boolean().optional(),
  offerings: z.array(uuid).min(1).max(1000).optional(),
});

const mineQuery = pageQuery.extend({
  personal: z.enum(['true', 'false']).optional(),
  community: z.enum(['true', 'false']).optional(),
});

const listQuery = pageQuery.extend({ offering: uuid.optional() });

function checkOfferings(s: Readonly<State>, datastore: string, ids: string[]): void {
  ids.forEach((id, i) => {
    const o = Object.hasOwn(s.offerings, id) ? s.offerings[id] : undefined;
    if (!o || o.datastore !== datastore) throw badRequest(`offerings.${i}: no offering ${id} in this datastore`);
  });
}

function offeringRefs(s: Readonly<State>, ids: string[]) {
  return ids.map((id) => {
    const o = s.offerings[id];
    return o ? { type: o.type, status: o.status, layer_name: o.layer_name, open: o.open, available: o.available, _id: id } : { _id: id };
  });
}

function permissionView(s: Readonly<State>, p: Permission) {
  const { datastore, beneficiary, offerings, ...rest } = p;
  const d = s.datastores[datastore];
  return {
    ...rest,
    offerings: offeringRefs(s, offerings),
    datastore_author: d ? { name: d.name, technical_name: d.technical_name, active: d.active, _id: d._id } : { _id: datastore },
    beneficiary: beneficiary === s.admin_user ? { _id: beneficiary, first_name: 'tuile', last_name: 'admin' } : { _id: beneficiary },
  };
}

/** A permission as its beneficiary sees it (`/users/me/permissions`). */
function mineView(s: Readonly<State>, p: Permission) {
  return { licence: p.licence, ...(p.end_date ? { end_date: p.end_date } : {}), offerings: offeringRefs(s, p.offerings), only_oauth: p.only_oauth, _id: p._id };
}

export function permissionRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const D = '/datastores/:datastore/permissions';
  const ds = (c: Context) => datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
  const get = (c: Context) => find(ctx.store.state.permissions, 'permission', c.req.param('datastore')!, c.req.param('permission')!);

  route(app, P, { method: 'post', path: D, summary: 'Grant offerings to users (one permission each, answered as an array)', tag: 'permissions', body: createSchema, status: 201 }, async (c) => {
    const d = ds(c);
    const b = await body(c, createSchema);
    const list = await ctx.store.update((s) => {
      checkOfferings(s, d, b.offerings);
      const field = b.type === 'COMMUNITY' ? (b.communities ? 'communities' : 'users') : 'users';
      // an ACCOUNT permission without users is granted to the one asking
      const ids = b.type === 'COMMUNITY' ? (b.communities ?? b.users) : (b.users ?? [s.admin_user]);
      if (!ids) throw badRequest(`${field}: the beneficiaries of the permission are required`);
      // tuile has one user and no community: every other beneficiary is unknown
      ids.forEach((id, i) => {
        if (b.type === 'COMMUNITY' || id !== s.admin_user) throw badRequest(`${field}.${i}: no ${b.type === 'COMMUNITY' ? 'community' : 'user'} ${id} here`);
      });
      return [...new Set(ids)].map((user) => {
        const p: Permission = {
          _id: randomUUID(),
          datastore: d,
          licence: b.licence,
          ...(b.end_date ? { end_date: b.end_date } : {}),
          only_oauth: b.only_oauth,
          offerings: [...new Set(b.offerings)],
          beneficiary: user,
          ...created(s.admin_user),
        };
        s.permissions[p._id] = p;
        return p;
      });
    });
    return c.json(list.map((p) => permissionView(ctx.store.state, p)), 201);
  });

  route(app, P, { method: 'get', path: '/users/me/permissions', summary: 'The permissions granted to me (filters: personal, community)', tag: 'permissions', query: mineQuery }, (c) => {
    const q = query(c, mineQuery);
    const s = ctx.store.state;
    // no community here: a request for community permissions only finds none
    const list = q.personal === 'false' ? [] : Object.values(s.permissions).filter((p) => p.beneficiary === s.admin_user);
    return page(c, byCreation(list).map((p) => mineView(s, p)), q);
  });

  route(app, P, { method: 'get', path: '/users/me/permissions/:permission', summary: 'A permission granted to me', tag: 'permissions' }, (c) => {
    const s = ctx.store.state;
    const id = c.req.param('permission')!;
    const p = Object.hasOwn(s.permissions, id) ? s.permissions[id] : undefined;
    if (!p || p.beneficiary !== s.admin_user) throw notFound('permission', id);
    return c.json(mineView(s, p));
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
      if (b.only_oauth !== undefined) p.only_oauth = b.only_oauth;
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
