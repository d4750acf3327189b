// The admin user's API keys (/api/users/me/keys) and their accesses: which offerings of which permission a
// key opens. A key is shown once, when it is made; the state keeps only its hash.

import { randomBytes, randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { hashKey, now, type ApiKey, type State } from '../state/model.js';
import { badRequest, body, byCreation, conflict, notFound, page, pageQuery, query, route, uuid, type ApiContext } from './http.js';

const createSchema = z.strictObject({
  name: z.string().min(1).max(255),
  type: z.literal('HASH').default('HASH'),
  // the key itself, when its owner chooses it (as the platform's guide does); otherwise one is made
  type_infos: z.strictObject({ hash: z.string().min(8).max(256).regex(/^[\x21-\x7e]+$/, 'printable ASCII, no spaces') }).optional(),
  accesses: z.array(z.strictObject({ permission: uuid, offerings: z.array(uuid).min(1).max(1000) })).max(100).default([]),
});

const patchSchema = z.strictObject({ name: z.string().min(1).max(255) });

const accessSchema = z.strictObject({ permission: uuid, offerings: z.array(uuid).min(1).max(1000) });

function keyView(k: ApiKey) {
  const { hash: _h, accesses: _a, user: _u, prefix, ...rest } = k;
  return { ...rest, type_infos: { prefix } };
}

/** A key's accesses as the Entrepôt lists them: one per offering, with the permission it goes through. */
function accessesView(s: Readonly<State>, k: ApiKey) {
  return k.accesses.flatMap((a) => {
    const p = s.permissions[a.permission];
    const permission = { licence: p?.licence, end_date: p?.end_date, only_oauth: p?.only_oauth, _id: a.permission };
    return a.offerings.map((id) => {
      const o = s.offerings[id];
      return { permission, offering: o ? { open: o.open, available: o.available, layer_name: o.layer_name, type: o.type, status: o.status, _id: id } : { _id: id } };
    });
  });
}

/** An access must go through a permission granted to the key's user and cover only its offerings. */
function checkAccess(s: Readonly<State>, user: string, a: { permission: string; offerings: string[] }): void {
  const p = Object.hasOwn(s.permissions, a.permission) ? s.permissions[a.permission] : undefined;
  if (!p || p.beneficiary !== user) throw badRequest(`accesses: permission ${a.permission} is not granted to this user`);
  if (p.only_oauth) throw badRequest(`accesses: permission ${a.permission} is only for OAuth logins, which tuile does not have: no key can use it`);
  const outside = a.offerings.filter((o) => !p.offerings.includes(o));
  if (outside.length) throw badRequest(`accesses: permission ${a.permission} does not grant offering(s) ${outside.join(', ')}`);
}

export function keyRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const K = '/users/me/keys';
  const me = () => ctx.store.state.admin_user;
  const get = (c: Context): ApiKey => {
    const id = c.req.param('key')!;
    const k = Object.hasOwn(ctx.store.state.keys, id) ? ctx.store.state.keys[id] : undefined;
    if (!k || k.user !== me()) throw notFound('key', id);
    return k;
  };

  route(app, P, { method: 'get', path: '/users/me', summary: 'The user of the admin token', tag: 'keys' }, (c) =>
    c.json({ _id: me(), first_name: 'tuile', last_name: 'admin', communities_member: [], keys: Object.values(ctx.store.state.keys).filter((k) => k.user === me()).length }),
  );

  route(app, P, { method: 'post', path: K, summary: 'Make a key (its value is in this answer only)', tag: 'keys', body: createSchema, status: 201 }, async (c) => {
    const b = await body(c, createSchema);
    const secret = b.type_infos?.hash ?? randomBytes(24).toString('base64url');
    const k = await ctx.store.update((s) => {
      for (const a of b.accesses) checkAccess(s, s.admin_user, a);
      // a key names one holder: a chosen one must be new
      if (Object.values(s.keys).some((x) => x.hash === hashKey(secret))) throw conflict('type_infos.hash: this key is already in use: choose another');
      const t = now();
      const k: ApiKey = {
        _id: randomUUID(),
        user: s.admin_user,
        name: b.name,
        type: b.type,
        hash: hashKey(secret),
        prefix: secret.slice(0, 6),
        accesses: b.accesses,
        creation: t,
        update: t,
        tags: {},
      };
      s.keys[k._id] = k;
      return k;
    });
    // the key in clear, in this answer only
    return c.json({ ...keyView(k), type_infos: { hash: secret, prefix: k.prefix }, key: secret }, 201);
  });

  route(app, P, { method: 'get', path: K, summary: 'List my keys', tag: 'keys', query: pageQuery }, (c) => {
    const list = Object.values(ctx.store.state.keys).filter((k) => k.user === me());
    return page(c, byCreation(list).map(keyView), query(c, pageQuery));
  });

  route(app, P, { method: 'get', path: `${K}/:key`, summary: 'A key', tag: 'keys' }, (c) => c.json(keyView(get(c))));

  route(app, P, { method: 'patch', path: `${K}/:key`, summary: 'Rename a key', tag: 'keys', body: patchSchema }, async (c) => {
    const id = get(c)._id;
    const b = await body(c, patchSchema);
    const k = await ctx.store.update((s) => {
      s.keys[id].name = b.name;
      s.keys[id].update = now();
      return s.keys[id];
    });
    return c.json(keyView(k));
  });

  route(app, P, { method: 'delete', path: `${K}/:key`, summary: 'Revoke a key', tag: 'keys', status: 204 }, async (c) => {
    const id = get(c)._id;
    await ctx.store.update((s) => {
      delete s.keys[id];
    });
    return c.body(null, 204);
  });

  route(app, P, { method: 'get', path: `${K}/:key/accesses`, summary: 'The offerings a key opens, by permission', tag: 'keys' }, (c) =>
    c.json(accessesView(ctx.store.state, get(c))),
  );

  route(app, P, { method: 'post', path: `${K}/:key/accesses`, summary: 'Let a key use offerings of a permission', tag: 'keys', body: accessSchema, status: 201 }, async (c) => {
    const id = get(c)._id;
    const b = await body(c, accessSchema);
    const k = await ctx.store.update((s) => {
      checkAccess(s, s.keys[id].user, b);
      const k = s.keys[id];
      const cur = k.accesses.find((a) => a.permission === b.permission);
      if (cur) cur.offerings = [...new Set([...cur.offerings, ...b.offerings])];
      else k.accesses.push({ permission: b.permission, offerings: [...new Set(b.offerings)] });
      k.update = now();
      return k;
    });
    return c.json(accessesView(ctx.store.state, k), 201);
  });

  route(app, P, { method: 'delete', path: `${K}/:key/accesses/:permission`, summary: 'Remove the accesses of a key through a permission', tag: 'keys', status: 204 }, async (c) => {
    const id = get(c)._id;
    const perm = c.req.param('permission')!;
    await ctx.store.update((s) => {
      const k = s.keys[id];
      if (!k.accesses.some((a) => a.permission === perm)) throw notFound('access through permission', perm);
      k.accesses = k.accesses.filter((a) => a.permission !== perm);
    });
    return c.body(null, 204);
  });

  return app;
}
