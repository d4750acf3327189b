// interop's tuile: `node dist/main.js` on a data folder of its own on 127.0.0.1, and the management API
// calls of the tutorial that publish a layer, chain a pyramid on it, publish the chain and fuse it.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../dist/client.js';
import { startTuile as startProcess } from '../bench/lib.mjs';

const TOKEN = 'interop-admin-token-0123456789';

/** tuile on a data folder of its own, with 2 serving processes. */
export function startTuile(dataDir) {
  return startProcess({ dataDir, token: TOKEN, workers: 2 });
}

/** The scenario client (src/client.ts, built into dist/) on the default datastore of the tuile at `base`. */
async function client(base) {
  const api = new ApiClient(base, TOKEN);
  await api.init();
  return api;
}

/**
 * The tutorial's steps 1-3: the north delivery uploaded, built (png, bicubic, levels 0-7), published.
 * Answers the stored data and what `publishOn` needs to point the layer at another one.
 */
export async function publish(base, { layer, bottom, delivery }) {
  const api = await client(base);
  const u = await api.deliver([{ path: 'data/north.tif', file: delivery }], 'EPSG:2154', 'north', { description: 'interop' });
  if (u.status !== 'CLOSED') throw new Error(`upload north: ${u.status}`);
  const sd = await api.compute({ upload: [u._id] }, { tms: 'PM', compression: 'png', interpolation: 'bicubic', bottom }, 'north');
  const body = (storedData) => ({
    type: 'WMTS-TMS',
    name: 'interop',
    layer_name: layer,
    type_infos: { title: 'France relief (interop)', abstract: '', keywords: ['relief'], used_data: [{ stored_data: storedData, bottom_level: String(bottom), top_level: '0' }] },
    getfeatureinfo: { stored_data: true },
  });
  return { storedData: sd, ...(await api.publish(body(sd))), body };
}

/** The tutorial's step 5: the layer's configuration replaced to serve `storedData`, its offering synchronised. */
export async function publishOn(base, published, storedData) {
  await (await client(base)).synchronise(published, published.body(storedData));
}

/** The `pyramid-fusion` processing on one chained pyramid: answers the new, standalone stored data. */
export async function fuse(base, chained) {
  const api = await client(base);
  return api.compute({ stored_data: [chained] }, {}, 'north+south fused', await api.processing('pyramid-fusion'));
}

/** The archives of the pyramids: the root one (no parent: it holds the whole layer) and a chained one. */
export function archivesOf(dataDir) {
  const out = {};
  for (const dir of readdirSync(join(dataDir, 'pyramids'))) {
    const p = join(dataDir, 'pyramids', dir);
    if (!existsSync(join(p, 'pyramid.json'))) continue;
    const desc = JSON.parse(readFileSync(join(p, 'pyramid.json'), 'utf8'));
    out[desc.parents.length === 0 ? 'root' : 'chained'] = join(p, 'tiles.pmtiles');
  }
  if (!out.root) throw new Error('no root pyramid');
  return out;
}

/** The tutorial's step 4: the south delivery built as a pyramid chained on the north; answers its id. */
export async function chainSouth(base, north, south) {
  const api = await client(base);
  const u = await api.deliver([{ path: 'data/south.tif', file: south }], 'EPSG:2154', 'south', { description: 'interop' });
  if (u.status !== 'CLOSED') throw new Error(`upload south: ${u.status}`);
  return api.compute({ upload: [u._id], stored_data: [north] }, {}, 'north+south');
}
