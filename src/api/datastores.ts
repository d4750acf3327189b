// Datastores and their endpoints: one default datastore with one open WMTS-TMS endpoint, made at first
// start; endpoints advertise the WMTS and TMS addresses of this server.

import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { SERVICE_TYPE, now, type Endpoint, type State } from '../state/model.js';
import type { StateStore } from '../state/store.js';
import { baseUrl, datastoreOf, notFound, page, pageQuery, query, route, type ApiContext } from './http.js';

function newEndpoint(open: boolean): Endpoint {
  const t = now();
  return {
    _id: randomUUID(),
    name: open ? 'Diffusion WMTS-TMS' : 'Diffusion WMTS-TMS privée',
    technical_name: open ? 'tuile-wmts-tms' : 'tuile-wmts-tms-private',
    type: SERVICE_TYPE,
    open,
    creation: t,
    update: t,
    tags: {},
  };
}

/**
 * The default datastore with its two WMTS-TMS endpoints, as on the platform: an open one, and a private
 * one (`open: false`, served under /private) whose offerings can be restricted to keys. A state made
 * before the private endpoint existed gets it.
 */
export async function ensureDefaults(store: StateStore): Promise<void> {
  const hasPrivate = (s: Readonly<State>, d: { endpoints: string[] }) => d.endpoints.some((e) => s.endpoints[e]?.open === false);
  const datastores = Object.values(store.state.datastores);
  if (datastores.length > 0 && datastores.every((d) => hasPrivate(store.state, d))) return;
  await store.update((s) => {
    for (const d of Object.values(s.datastores)) {
      if (hasPrivate(s, d)) continue;
      const e = newEndpoint(false);
      s.endpoints[e._id] = e;
      d.endpoints.push(e._id);
    }
    if (Object.keys(s.datastores).length > 0) return;
    const t = now();
    const open = newEndpoint(true);
    const priv = newEndpoint(false);
    s.endpoints[open._id] = open;
    s.endpoints[priv._id] = priv;
    const id = randomUUID();
    s.datastores[id] = {
      _id: id,
      name: 'tuile',
      technical_name: 'tuile',
      active: true,
      endpoints: [open._id, priv._id],
      creation: t,
      update: t,
      tags: {},
    };
  });
}

/** Where an endpoint's layers are served: the private endpoint's under /private. */
export function endpointBase(e: Endpoint | undefined, base: string): string {
  return e?.open === false ? `${base}/private` : base;
}

function endpointUrls(e: Endpoint, base: string): { type: string; url: string }[] {
  const b = endpointBase(e, base);
  return [
    { type: 'WMTS', url: `${b}/wmts` },
    { type: 'TMS', url: `${b}/tms/1.0.0` },
  ];
}

export function endpointView(e: Endpoint, base: string) {
  return { ...e, urls: endpointUrls(e, base) };
}

function datastoreView(s: Readonly<State>, id: string, base: string) {
  const d = datastoreOf(s, id);
  const offerings = Object.values(s.offerings).filter((o) => o.datastore === id);
  return {
    ...d,
    endpoints: d.endpoints.map((eid) => ({
      endpoint: endpointView(s.endpoints[eid], base),
      quota: 100_000,
      use: offerings.filter((o) => o.endpoint === eid).length,
    })),
    storages: { data: [{ type: 'FILESYSTEM', use: Object.values(s.stored_data).filter((sd) => sd.datastore === id).reduce((n, sd) => n + (sd.size ?? 0), 0) }] },
  };
}

export function datastoreRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const base = (c: Context) => baseUrl(c, ctx.config);
  route(app, P, { method: 'get', path: '/datastores', summary: 'List the datastores', tag: 'datastores', query: pageQuery }, (c) => {
    const s = ctx.store.state;
    return page(c, Object.keys(s.datastores).map((id) => datastoreView(s, id, base(c))), query(c, pageQuery));
  });
  route(app, P, { method: 'get', path: '/datastores/:datastore', summary: 'A datastore with its endpoints', tag: 'datastores' }, (c) =>
    c.json(datastoreView(ctx.store.state, c.req.param('datastore')!, base(c))),
  );
  route(app, P, { method: 'get', path: '/datastores/:datastore/endpoints', summary: "The datastore's endpoints", tag: 'endpoints', query: pageQuery }, (c) => {
    const s = ctx.store.state;
    const d = datastoreOf(s, c.req.param('datastore')!);
    return page(c, d.endpoints.map((e) => endpointView(s.endpoints[e], base(c))), query(c, pageQuery));
  });
  route(app, P, { method: 'get', path: '/datastores/:datastore/endpoints/:endpoint', summary: 'An endpoint', tag: 'endpoints' }, (c) => {
    const s = ctx.store.state;
    const d = datastoreOf(s, c.req.param('datastore')!);
    const id = c.req.param('endpoint')!;
    if (!d.endpoints.includes(id)) throw notFound('endpoint', id);
    return c.json(endpointView(s.endpoints[id], base(c)));
  });
  return app;
}
