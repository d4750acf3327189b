// Configurations (WMTS-TMS): what a layer would serve (a stored data between two levels, its title,
// abstract, keywords, bbox). Changing one changes nothing served until its offerings are synchronised.

import { randomUUID } from 'node:crypto';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { CONFIGURATION_STATUSES, LAYER_NAME, PYRAMID_TYPE, SERVICE_TYPE, now, type Configuration, type State } from '../state/model.js';
import { badRequest, body, byCreation, conflict, datastoreOf, find, mergeTags, page, pageQuery, query, route, tagsSchema, uuid, type ApiContext } from './http.js';

const levelId = z.string().regex(/^(1?[0-9]|2[01])$/, 'a level id of PM, "0" to "21"');

const usedData = z.strictObject({ stored_data: uuid, bottom_level: levelId, top_level: levelId });

// the Entrepôt's metadata links and attribution, written into the layer's capabilities
const metadataLink = z.strictObject({ format: z.string().min(1).max(255), url: z.url().max(2048), type: z.string().min(1).max(255) });

const attribution = z.strictObject({
  title: z.string().max(1024),
  url: z.url().max(2048),
  logo: z
    .strictObject({
      format: z.string().min(1).max(255),
      url: z.url().max(2048),
      width: z.number().int().min(1).max(10_000).optional(),
      height: z.number().int().min(1).max(10_000).optional(),
    })
    .optional(),
});

const bbox = z
  .strictObject({
    west: z.number().min(-180).max(180),
    south: z.number().min(-90).max(90),
    east: z.number().min(-180).max(180),
    north: z.number().min(-90).max(90),
  })
  .refine((b) => b.west < b.east && b.south < b.north, 'west must be less than east and south less than north');

const typeInfos = z.strictObject({
  title: z.string().min(1).max(1024),
  abstract: z.string().max(8192).default(''),
  keywords: z.array(z.string().min(1).max(255)).max(64).default([]),
  // several entries: one pyramid per level range, as the Entrepôt allows
  used_data: z.array(usedData).min(1).max(22),
  bbox: bbox.optional(),
});

const configurationSchema = z.strictObject({
  type: z.literal(SERVICE_TYPE),
  name: z.string().min(1).max(255),
  layer_name: z.string().regex(LAYER_NAME, 'letters, digits, _ . : - (first a letter, digit or _), at most 128'),
  type_infos: typeInfos,
  getfeatureinfo: z.strictObject({ stored_data: z.boolean() }).optional(),
  metadata: z.array(metadataLink).max(32).optional(),
  attribution: attribution.optional(),
  tags: tagsSchema.default({}),
});

const patchSchema = z.strictObject({
  name: z.string().min(1).max(255).optional(),
  tags: tagsSchema.optional(),
  type_infos: z
    .strictObject({
      title: z.string().min(1).max(1024).optional(),
      abstract: z.string().max(8192).optional(),
      keywords: z.array(z.string().min(1).max(255)).max(64).optional(),
      bbox: bbox.optional(),
    })
    .optional(),
  getfeatureinfo: z.strictObject({ stored_data: z.boolean() }).optional(),
  metadata: z.array(metadataLink).max(32).optional(),
  attribution: attribution.nullable().optional(),
});

const listQuery = pageQuery.extend({
  type: z.string().max(64).optional(),
  status: z.enum(CONFIGURATION_STATUSES).optional(),
  layer_name: z.string().max(128).optional(),
  stored_data: uuid.optional(),
});

type ConfigurationBody = z.infer<typeof configurationSchema>;

/**
 * Checks what a body refers to in the state: stored data generated (an unknown id is the body's mistake,
 * 400 naming the field), levels among the stored data's, level ranges apart and of one tile format, and
 * the layer_name free.
 */
function validate(s: Readonly<State>, datastore: string, b: ConfigurationBody, self?: string): void {
  const seen: { top: number; bottom: number; compression: string; bands: number; i: number }[] = [];
  b.type_infos.used_data.forEach((u, i) => {
    const field = `type_infos.used_data.${i}`;
    const sd = Object.hasOwn(s.stored_data, u.stored_data) ? s.stored_data[u.stored_data] : undefined;
    if (!sd || sd.datastore !== datastore) throw badRequest(`${field}.stored_data: no stored data ${u.stored_data} in this datastore`);
    if (sd.type !== PYRAMID_TYPE || sd.status !== 'GENERATED' || !sd.type_infos) {
      throw badRequest(`${field}.stored_data: stored data ${sd._id} is ${sd.status}, not a GENERATED pyramid`);
    }
    const levels = sd.type_infos.levels;
    for (const k of ['bottom_level', 'top_level'] as const) {
      if (!levels.includes(u[k])) throw badRequest(`${field}.${k}: level ${u[k]} is not in stored data ${sd._id} (levels ${levels[0]}-${levels[levels.length - 1]})`);
    }
    const top = Number(u.top_level);
    const bottom = Number(u.bottom_level);
    if (top > bottom) throw badRequest(`${field}: top_level must not be below bottom_level`);
    for (const o of seen) {
      if (top <= o.bottom && o.top <= bottom) throw badRequest(`${field}: levels ${top}-${bottom} overlap those of type_infos.used_data.${o.i} (${o.top}-${o.bottom})`);
      // a layer advertises one format and one blank tile
      if (o.compression !== sd.type_infos.compression || o.bands !== sd.type_infos.channels_number) {
        throw badRequest(`${field}.stored_data: stored data ${sd._id} is ${sd.type_infos.compression} with ${sd.type_infos.channels_number} band(s), unlike type_infos.used_data.${o.i}`);
      }
    }
    seen.push({ top, bottom, compression: sd.type_infos.compression, bands: sd.type_infos.channels_number, i });
  });
  const taken = Object.values(s.configurations).find((c) => c.layer_name === b.layer_name && c._id !== self);
  if (taken) throw conflict(`layer_name ${b.layer_name} is taken by configuration ${taken._id}`);
}

function configurationView(c: Configuration) {
  const { datastore: _d, ...rest } = c;
  return rest;
}

export function configurationRoutes(ctx: ApiContext): OpenAPIHono {
  const app = new OpenAPIHono();
  const P = '/api';
  const D = '/datastores/:datastore/configurations';
  const ds = (c: Context) => datastoreOf(ctx.store.state, c.req.param('datastore')!)._id;
  const get = (c: Context) => find(ctx.store.state.configurations, 'configuration', c.req.param('datastore')!, c.req.param('configuration')!);

  route(app, P, { method: 'post', path: D, summary: 'Create a WMTS-TMS configuration (UNPUBLISHED)', tag: 'configurations', body: configurationSchema, status: 201 }, async (c) => {
    const d = ds(c);
    const b = await body(c, configurationSchema);
    const conf = await ctx.store.update((s) => {
      validate(s, d, b);
      const t = now();
      const conf: Configuration = { _id: randomUUID(), datastore: d, ...b, status: 'UNPUBLISHED', creation: t, update: t, last_event: { title: 'creation', date: t, initiator: { _id: s.admin_user } } };
      s.configurations[conf._id] = conf;
      return conf;
    });
    return c.json(configurationView(conf), 201);
  });

  route(app, P, { method: 'get', path: D, summary: 'List configurations (filters: type, status, layer_name, stored_data)', tag: 'configurations', query: listQuery }, (c) => {
    const d = ds(c);
    const q = query(c, listQuery);
    const list = Object.values(ctx.store.state.configurations).filter(
      (x) =>
        x.datastore === d &&
        (!q.type || x.type === q.type) &&
        (!q.status || x.status === q.status) &&
        (!q.layer_name || x.layer_name === q.layer_name) &&
        (!q.stored_data || x.type_infos.used_data.some((u) => u.stored_data === q.stored_data)),
    );
    return page(c, byCreation(list).map(configurationView), q);
  });

  route(app, P, { method: 'get', path: `${D}/:configuration`, summary: 'A configuration', tag: 'configurations' }, (c) => c.json(configurationView(get(c))));

  route(
    app,
    P,
    { method: 'put', path: `${D}/:configuration`, summary: 'Replace a configuration; offerings serve it once synchronised', tag: 'configurations', body: configurationSchema },
    async (c) => {
      const d = ds(c);
      const id = get(c)._id;
      const b = await body(c, configurationSchema);
      const conf = await ctx.store.update((s) => {
        const cur = s.configurations[id];
        validate(s, d, b, id);
        const published = Object.values(s.offerings).some((o) => o.configuration === id);
        if (published && b.layer_name !== cur.layer_name) throw conflict(`layer_name cannot change while configuration ${id} has offerings`);
        const t = now();
        Object.assign(cur, b, { update: t, last_event: { title: 'replaced', date: t, initiator: { _id: s.admin_user } } });
        return cur;
      });
      return c.json(configurationView(conf));
    },
  );

  route(app, P, { method: 'patch', path: `${D}/:configuration`, summary: 'Change name, tags, title, abstract, keywords, bbox, getfeatureinfo, metadata or attribution (null: none)', tag: 'configurations', body: patchSchema }, async (c) => {
    const id = get(c)._id;
    const b = await body(c, patchSchema);
    const conf = await ctx.store.update((s) => {
      const cur = s.configurations[id];
      if (b.name !== undefined) cur.name = b.name;
      if (b.tags !== undefined) cur.tags = mergeTags(cur.tags, b.tags);
      if (b.type_infos) Object.assign(cur.type_infos, b.type_infos);
      if (b.getfeatureinfo) cur.getfeatureinfo = b.getfeatureinfo;
      if (b.metadata) cur.metadata = b.metadata;
      if (b.attribution === null) delete cur.attribution;
      else if (b.attribution) cur.attribution = b.attribution;
      cur.update = now();
      return cur;
    });
    return c.json(configurationView(conf));
  });

  route(app, P, { method: 'delete', path: `${D}/:configuration`, summary: 'Delete a configuration without offerings (409 otherwise)', tag: 'configurations', status: 204 }, async (c) => {
    const id = get(c)._id;
    await ctx.store.update((s) => {
      const offerings = Object.values(s.offerings).filter((o) => o.configuration === id);
      if (offerings.length) throw conflict(`configuration ${id} is published by offering(s) ${offerings.map((o) => o._id).join(', ')}: delete them first`);
      delete s.configurations[id];
    });
    return c.body(null, 204);
  });

  return app;
}
