// First start on an empty data folder: the reference scenario (DESIGN 1) run against the management API
// itself, on the two deliveries committed in data/demo: the north is published, then the south is chained
// on it and the layer synchronised. The same calls as examples/tutorial.sh, without the network.

import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { TuileError } from './errors.js';

const DEMO = resolve(fileURLToPath(import.meta.url), '../../data/demo');
export const DEMO_LAYER = 'france_relief';

type Json = Record<string, unknown> & { _id: string; status: string };

export async function seedDemo(api: Hono, token: string): Promise<void> {
  const call = async (method: string, path: string, body?: unknown, raw?: Uint8Array): Promise<Json & Json[]> => {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (raw) headers['Content-Type'] = 'application/octet-stream';
    const r = await api.request(path, { method, headers, body: raw ? new Blob([new Uint8Array(raw)]) : body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (r.status >= 400) throw new TuileError('Internal', `${method} ${path}: ${r.status} ${text}`);
    return (text ? JSON.parse(text) : {}) as Json & Json[];
  };
  const until = async (path: string, done: string[], fail: string[]): Promise<Json> => {
    for (;;) {
      const e = await call('GET', path);
      if (done.includes(e.status)) return e;
      if (fail.includes(e.status)) throw new TuileError('Internal', `${path} ended ${e.status}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const d = (await call('GET', '/api/datastores'))[0]._id;
  const D = `/api/datastores/${d}`;
  const endpoint = ((await call('GET', `${D}/endpoints`))[0] as Json)._id;
  const processing = (await call('GET', `${D}/processings`))[0]._id;

  const deliver = async (name: string, file: string): Promise<string> => {
    const u = await call('POST', `${D}/uploads`, { name, description: `demo delivery: ${file}`, type: 'RASTER', srs: 'EPSG:2154' });
    await call('POST', `${D}/uploads/${u._id}/data?path=${encodeURIComponent(`data/${file}`)}`, undefined, await readFile(join(DEMO, file)));
    await call('POST', `${D}/uploads/${u._id}/close`);
    await until(`${D}/uploads/${u._id}`, ['CLOSED'], ['UNSTABLE']);
    return u._id;
  };
  const compute = async (name: string, inputs: { upload: string[]; stored_data?: string[] }, parameters: Record<string, unknown>) => {
    const e = await call('POST', `${D}/processings/executions`, { processing, inputs, output: { stored_data: { name, storage_tags: ['PYRAMIDE'] } }, parameters });
    await call('POST', `${D}/processings/executions/${e._id}/launch`);
    const done = await until(`${D}/processings/executions/${e._id}`, ['SUCCESS'], ['FAILURE', 'ABORTED']);
    return (done.output as { stored_data: { _id: string } }).stored_data._id;
  };

  console.log('tuile: empty data folder: running the reference scenario on the demo deliveries (France relief, Lambert-93)');
  const north = await compute('france_relief_north', { upload: [await deliver('France relief, north', 'france_relief_north_2154.tif')] }, {
    tms: 'PM',
    compression: 'png',
    interpolation: 'bicubic',
    bottom: 7,
  });
  const typeInfos = (sd: string) => ({
    title: 'France relief (demo)',
    abstract: 'Marble SRTM relief texture of metropolitan France, delivered in Lambert-93 as a north and a south part',
    keywords: ['relief', 'demo'],
    used_data: [{ stored_data: sd, bottom_level: '7', top_level: '0' }],
  });
  const conf = await call('POST', `${D}/configurations`, { type: 'WMTS-TMS', name: 'France relief', layer_name: DEMO_LAYER, type_infos: typeInfos(north), getfeatureinfo: { stored_data: true } });
  const offering = await call('POST', `${D}/configurations/${conf._id}/offerings`, { endpoint, open: true });
  await until(`${D}/offerings/${offering._id}`, ['PUBLISHED'], ['UNSTABLE']);
  console.log(`tuile: demo: north published as ${DEMO_LAYER}; chaining the south on it`);

  const whole = await compute('france_relief_north_south', { upload: [await deliver('France relief, south', 'france_relief_south_2154.tif')], stored_data: [north] }, {});
  await call('PUT', `${D}/configurations/${conf._id}`, { type: 'WMTS-TMS', name: 'France relief', layer_name: DEMO_LAYER, type_infos: typeInfos(whole), getfeatureinfo: { stored_data: true } });
  await call('PUT', `${D}/offerings/${offering._id}`);
  await until(`${D}/offerings/${offering._id}`, ['PUBLISHED'], ['UNSTABLE']);
  // PUBLISHED in the state means switched: a commit is visible once every serving process follows it
  console.log(`tuile: demo: ${DEMO_LAYER} synchronised on the chained pyramid (north + south)`);
}
