// Offerings: a configuration published on an endpoint. An offering serves a copy of its configuration
// taken when it was published or last synchronised (`PUT`), so that changing the configuration changes
// nothing served until then. Each change goes through an intermediate status (PUBLISHING, MODIFYING,
// UNPUBLISHING) while the new pyramid chain is opened and checked; the layer registry follows the
// committed state (DESIGN 7).

import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { dataPaths } from '../config.js';
import { errorMessage } from '../errors.js';
import { FORMATS, formatOfCompression } from '../formats.js';
import { OFFERING_STATUSES, SERVER, now, publishedStoredData, pyramidFolder, type Configuration, type Offering, type Published, type State } from '../state/model.js';
import { baseUrl, body, byCreation, conflict, datastoreOf, find, page, pageQuery, query, route, uuid, type ApiContext, badRequest, endpointBase, endpointView } from './http.js';

const createSchema = z.strictObject({
  endpoint: uuid,
  open: z.boolean().default(true),
  available: z.boolean().default(true),
  // permissions of this datastore the new offering is added to
  permissions: z.array(uuid).max(100).default([]),
});

const patchSchema = z.strictObject({ open: z.boolean().optional(), available: z.boolean().optional() });

const listQuery = pageQuery.extend({
  type: z.string().max(64).optional(),
  status: z.enum(OFFERING_STATUSES).optional(),
  endpoint: uuid.optional(),
  configuration: uuid.optional(),
  stored_data: uuid.optional(),
  layer_name: z.string().max(128).optional(),
});

/** What an offering will serve: the configuration as it is now, its finest level range first. */
function snapshot(c: Configuration): Published {
  const ranges = c.type_infos.used_data
    .map((u) => ({ stored_data: u.stored_data, bottom_level: Number(u.bottom_level), top_level: Number(u.top_level) }))
    .sort((a, b) => b.bottom_level - a.bottom_level);
  const [first, ...more] = ranges;
  return {
    ...first,
    title: c.type_infos.title,
    abstract: c.type_infos.abstract,
    keywords: c.type_infos.keywords,
    feature_info: c.getfeatureinfo?.stored_data ?? false,
    ...(c.metadata?.length ? { metadata: c.metadata } : {}),
    ...(c.attribution ? { attribution: c.attribution } : {}),
    ...(more.length ? { more } : {}),
  };
}

/** Why a configuration cannot be served now (a stored data not GENERATED), or null. */
function notServable(s: Readonly<State>, conf: Configuration): string | null {
  for (const u of conf.type_infos.used_data) {
    const sd = s.stored_data[u.stored_data];
    if (!sd || sd.status !== 'GENERATED') return `stored data ${u.stored_data} of configuration ${conf._id} is ${sd ? sd.status : 'deleted'}, not GENERATED`;
  }
  return null;
}

function offeringUrls(s: Readonly<State>, o: Offering, root: string): { type: string; url: string }[] {
  const layer = encodeURIComponent(o.layer_name);
  const base = endpointBase(s.endpoints[o.endpoint], root);
  const ext = FORMATS[formatOfCompression(s.stored_data[o.published.stored_data]?.type_infos?.compression ?? 'PNG') ?? 'png'].ext;
  return [
    { type: 'WMTS', url: `${base}/wmts?SERVICE=WMTS&REQUEST=GetCapabilities` },
    { type: 'TMS', url: `${base}/tms/1.0.0/${layer}` },
    { type: 'XYZ', url: `${base}/tiles/${layer}/{z}/{x}/{y}.${ext}` },
    { type: 'OGCAPI-TILES', url: `${base}/ogcapi/collections/${layer}/map/tiles/WebMercatorQuad` },
  ];
}

function offeringView(s: Readonly<State>, o: Offering, base: string) {
  const { datastore: _d, published: _p, pending: _n, configuration, endpoint, ...rest } = o;
  const conf = s.configurations[configuration];
  return {
    ...rest,
    configuration: conf ? { _id: conf._id, name: conf.name, type: conf.type, status: conf.status, layer_name: conf.layer_name } : { _id: configuration },
    endpoint: s.endpoints[endpoint] ? endpointView(s.endpoints[endpoint], base) : { _id: endpoint },
    urls: offeringUrls(s, o, base),
  };
}

/** A configuration's status from its offerings: SYNCHRONIZING while one is being switched. */
function configurationStatus(s: State, id: string): void {
  const conf = s.configurations[id];
  if (!conf) return;
  const offs = Object.values(s.offerings).filter((o) => o.configuration === id);
  const next = offs.length === 0 ? 'UNPUBLISHED' : offs.some((o) => o.status === 'MODIFYING') ? 'SYNCHRONIZING' : 'PUBLISHED';
  if (conf.status !== next) {
    conf.status = next;
    conf.update = now();
  }
}

/**
 * Ends a PUBLISHING or MODIFYING offering: opens and checks the pyramid chain it is to serve, then commits
 * PUBLISHED (the registry switches with that commit), or UNSTABLE if the chain cannot be served.
 */
async function settle(ctx: ApiContext, id: string): Promise<void> {
  const o = ctx.store.state.offerings[id];
  if (!o || (o.status !== 'PUBLISHING' && o.status !== 'MODIFYING')) return;
  const target = o.pending ?? o.published;
  let problem: string | null = null;
  for (const sid of publishedStoredData(target)) {
    const sd = ctx.store.state.stored_data[sid];
    if (!sd) {
      problem = `stored data ${sid} no longer exists`;
      break;
    }
    try {
      await ctx.layers.prepare([dataPaths(ctx.config.dataDir).pyramid(pyramidFolder(sd))]);
    } catch (err) {
      // the reason goes to the server's log; the offering says it in words, without the server's paths
      console.error(`tuile: offering ${id}: stored data ${sid}: ${errorMessage(err)}`);
      problem = `the pyramid of stored data ${sid} (${sd.name}) cannot be opened: its files are missing or damaged`;
      break;
    }
  }
  await ctx.store.update((s) => {
    const cur = s.offerings[id];
    if (!cur || (cur.status !== 'PUBLISHING' && cur.status !== 'MODIFYING')) return;
    const t = now();
    if (problem) {
      // a failed synchronisation keeps serving what it served; a failed first publication serves nothing
      if (cur.status === 'PUBLISHING' && !cur.pending) cur.unserved = true;
      cur.status = 'UNSTABLE';
      cur.last_event = { title: `${cur.pending ? 'synchronisation' : 'publication'} failed: ${problem}${cur.unserved ? '' : '; the layer keeps serving its previous data'}`, date: t, initiator: SERVER };
    } else {
      cur.published = target;
      cur.status = 'PUBLISHED';
      delete cur.unserved;
      cur.last_event = { title: cur.pending ? 'synchronised' : 'published', date: t, initiator: SERVER };
    }
    delete cur.pending;
    cur.update = t;
    configurationStatus(s, cur.configuration);
  });
}

function settleLater(ctx: ApiContext, id: string): void {
  void settle(ctx, id).catch((err) => console.error(`tuile: offering ${id}: ${errorMessage(err)}`));
}

/** After a restart: offerings caught between two statuses are settled again. */
export function recoverOfferings(ctx: ApiContext): void {
  for (const o of Object.values(ctx.store.state.offerings)) {
    if (o.status === 'PUBLISHING' || o.status === 'MODIFYING') settleLater(ctx, o._id);
    if (o.status === 'UNPUBLISHING') {
      void ctx.store.update((s) => {
        const conf = s.offerings[o._id]?.configuration;
        delete s.offerings[o._id];
        if (conf) configurationStatus(s, conf);
      });
    }
  }
}

export function offeringRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const D = '/datastores/:datastore';
  const ds = (c: Context) => datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
  const get = (c: Context) => find(ctx.store.state.offerings, 'offering', c.req.param('datastore')!, c.req.param('offering')!);
  const view = (c: Context, o: Offering) => offeringView(ctx.store.state, o, baseUrl(c, ctx.config));
  const filtered = (c: Context, q: z.infer<typeof listQuery>, configuration?: string) => {
    const d = ds(c);
    const list = Object.values(ctx.store.state.offerings).filter(
      (o) =>
        o.datastore === d &&
        (!configuration || o.configuration === configuration) &&
        (!q.type || o.type === q.type) &&
        (!q.status || o.status === q.status) &&
        (!q.endpoint || o.endpoint === q.endpoint) &&
        (!q.configuration || o.configuration === q.configuration) &&
        (!q.stored_data || publishedStoredData(o.published).includes(q.stored_data)) &&
        (!q.layer_name || o.layer_name === q.layer_name),
    );
    return page(c, byCreation(list).map((o) => view(c, o)), q);
  };

  route(
    app,
    P,
    { method: 'post', path: `${D}/configurations/:configuration/offerings`, summary: 'Publish a configuration on an endpoint (PUBLISHING, then PUBLISHED)', tag: 'offerings', body: createSchema, status: 201 },
    async (c) => {
      const d = ds(c);
      const confId = find(ctx.store.state.configurations, 'configuration', d, c.req.param('configuration')!)._id;
      const b = await body(c, createSchema);
      const o = await ctx.store.update((s) => {
        const conf = s.configurations[confId];
        const store = s.datastores[d];
        if (!store.endpoints.includes(b.endpoint) || !s.endpoints[b.endpoint]) throw badRequest(`endpoint: ${b.endpoint} is not an endpoint of datastore ${d}`);
        const endpoint = s.endpoints[b.endpoint];
        if (endpoint.type !== conf.type) throw badRequest(`endpoint: ${b.endpoint} is a ${endpoint.type} endpoint, not ${conf.type}`);
        b.permissions.forEach((p, i) => {
          const perm = Object.hasOwn(s.permissions, p) ? s.permissions[p] : undefined;
          if (!perm || perm.datastore !== d) throw badRequest(`permissions.${i}: no permission ${p} in this datastore`);
        });
        const dup = Object.values(s.offerings).find((x) => x.configuration === confId && x.endpoint === b.endpoint);
        if (dup) throw conflict(`configuration ${confId} is already offered on endpoint ${b.endpoint} (offering ${dup._id})`);
        const layerTaken = Object.values(s.offerings).find((x) => x.layer_name === conf.layer_name);
        if (layerTaken) throw conflict(`layer ${conf.layer_name} is already published by offering ${layerTaken._id}`);
        const why = notServable(s, conf);
        if (why) throw conflict(why);
        const t = now();
        const o: Offering = {
          _id: randomUUID(),
          datastore: d,
          type: conf.type,
          layer_name: conf.layer_name,
          // everything on an open endpoint is open, as on the platform
          open: endpoint.open || b.open,
          available: b.available,
          status: 'PUBLISHING',
          configuration: confId,
          endpoint: b.endpoint,
          published: snapshot(conf),
          creation: t,
          update: t,
          tags: {},
          last_event: { title: 'publishing', date: t, initiator: { _id: s.admin_user } },
        };
        s.offerings[o._id] = o;
        for (const p of b.permissions) if (!s.permissions[p].offerings.includes(o._id)) s.permissions[p].offerings.push(o._id);
        return o;
      });
      settleLater(ctx, o._id);
      return c.json(view(c, o), 201);
    },
  );

  route(app, P, { method: 'get', path: `${D}/configurations/:configuration/offerings`, summary: "A configuration's offerings", tag: 'offerings', query: listQuery }, (c) => {
    const conf = find(ctx.store.state.configurations, 'configuration', ds(c), c.req.param('configuration')!);
    return filtered(c, query(c, listQuery), conf._id);
  });

  route(app, P, { method: 'get', path: `${D}/offerings`, summary: 'List offerings (filters: type, status, endpoint, configuration, stored_data, layer_name)', tag: 'offerings', query: listQuery }, (c) =>
    filtered(c, query(c, listQuery)),
  );

  route(app, P, { method: 'get', path: `${D}/offerings/:offering`, summary: 'An offering with its urls', tag: 'offerings' }, (c) => c.json(view(c, get(c))));

  route(
    app,
    P,
    { method: 'get', path: `${D}/offerings/:offering/stats`, summary: "Requests answered for the offering's layer since the server started, per day and protocol", tag: 'offerings' },
    async (c) => {
      const o = get(c);
      const counts = (await ctx.layerCounts?.()) ?? {};
      const days = new Map<string, { date: string; total: number; protocols: Record<string, number> }>();
      for (const [k, n] of Object.entries(counts)) {
        const [date, protocol, layer] = k.split('\t');
        if (layer !== o.layer_name) continue;
        const d = days.get(date) ?? { date, total: 0, protocols: {} };
        d.total += n;
        d.protocols[protocol] = (d.protocols[protocol] ?? 0) + n;
        days.set(date, d);
      }
      const list = [...days.values()].sort((a, b) => a.date.localeCompare(b.date));
      return c.json({
        _id: o._id,
        layer_name: o.layer_name,
        // the counts live in the serving processes' memory, as /metrics does
        since: new Date(Date.now() - process.uptime() * 1000).toISOString(),
        total: list.reduce((n, d) => n + d.total, 0),
        days: list,
      });
    },
  );

  route(app, P, { method: 'patch', path: `${D}/offerings/:offering`, summary: 'Open or close, make available or not', tag: 'offerings', body: patchSchema }, async (c) => {
    const id = get(c)._id;
    const b = await body(c, patchSchema);
    const o = await ctx.store.update((s) => {
      const o = s.offerings[id];
      if (b.open !== undefined) o.open = b.open || (s.endpoints[o.endpoint]?.open ?? false);
      if (b.available !== undefined) o.available = b.available;
      o.update = now();
      return o;
    });
    return c.json(view(c, o));
  });

  route(
    app,
    P,
    { method: 'put', path: `${D}/offerings/:offering`, summary: "Synchronise with the configuration (MODIFYING, then PUBLISHED): the layer switches to the configuration's stored data", tag: 'offerings' },
    async (c) => {
      const id = get(c)._id;
      const o = await ctx.store.update((s) => {
        const o = s.offerings[id];
        if (o.status !== 'PUBLISHED' && o.status !== 'UNSTABLE') throw conflict(`offering ${id} is ${o.status}: wait until it is PUBLISHED`);
        const conf = s.configurations[o.configuration];
        const why = notServable(s, conf);
        if (why) throw conflict(why);
        const t = now();
        o.pending = snapshot(conf);
        // an offering that serves nothing yet publishes; one that serves switches
        o.status = o.unserved ? 'PUBLISHING' : 'MODIFYING';
        o.update = t;
        o.last_event = { title: 'synchronising', date: t, initiator: { _id: s.admin_user } };
        configurationStatus(s, o.configuration);
        return o;
      });
      settleLater(ctx, id);
      return c.json(view(c, o));
    },
  );

  route(app, P, { method: 'delete', path: `${D}/offerings/:offering`, summary: 'Unpublish (UNPUBLISHING, then gone)', tag: 'offerings', status: 204 }, async (c) => {
    const id = get(c)._id;
    await ctx.store.update((s) => {
      const o = s.offerings[id];
      if (o.status === 'UNPUBLISHING') throw conflict(`offering ${id} is already being unpublished`);
      o.status = 'UNPUBLISHING';
      o.update = now();
      o.last_event = { title: 'unpublishing', date: o.update, initiator: { _id: s.admin_user } };
    });
    // the registry drops the layer with the commit above; the offering goes with the next one
    await ctx.store.update((s) => {
      const conf = s.offerings[id]?.configuration;
      delete s.offerings[id];
      if (conf) configurationStatus(s, conf);
      // permissions and key accesses forget it
      for (const p of Object.values(s.permissions)) p.offerings = p.offerings.filter((o) => o !== id);
      for (const k of Object.values(s.keys)) for (const a of k.accesses) a.offerings = a.offerings.filter((o) => o !== id);
    });
    return c.body(null, 204);
  });

  return app;
}
