// Datastores and their endpoints: one default datastore with one open WMTS-TMS endpoint, made at first
// start; endpoints advertise the WMTS and TMS addresses of this server.

import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { SERVICE_TYPE, now, type Endpoint, type State } from '../state/model.js';
import type { StateStore } from '../state/store.js';
import { baseUrl, datastoreOf, notFound, page, pageQuery, query, route, type ApiContext } from './http.js';

/** The default datastore and endpoint, when the state has none. */
export async function ensureDefaults(store: StateStore): Promise<void> {
  if (Object.keys(store.state.datastores).length > 0) return;
  await store.update((s) => {
    const t = now();
    const endpoint: Endpoint = {
      _id: randomUUID(),
      name: 'Diffusion WMTS-TMS',
      technical_name: 'tuile-wmts-tms',
      type: SERVICE_TYPE,
      open: true,
      creation: t,
      update: t,
      tags: {},
    };
    s.endpoints[endpoint._id] = endpoint;
    const id = randomUUID();
    s.datastores[id] = {
      _id: id,
      name: 'tuile',
      technical_name: 'tuile',
      active: true,
      endpoints: [endpoint._id],
      creation: t,
      update: t,
      tags: {},
    };
  });
}

export function endpointUrls(base: string): { type: string; url: string }[] {
  return [
    { type: 'WMTS', url: `${base}/wmts` },
    { type: 'TMS', url: `${base}/tms/1.0.0` },
  ];
}

export function endpointView(e: Endpoint, base: string) {
  return { ...e, urls: endpointUrls(base) };
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

export function datastoreRoutes(ctx: ApiContext): Hono {
  const app = new Hono();
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
