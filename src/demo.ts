// First start on an empty data folder: the reference scenario (DESIGN 1) run against the management API
// itself, on the two deliveries committed in data/demo: the north is published, then the south is chained
// on it and the layer synchronised. The same calls as examples/tutorial.sh, through the scenario client
// on the API's app in process (no network).
// A marker file stays in the data folder while it runs: a start that finds it (the previous one was killed
// during the demo) resumes it, reusing what the demo already made and redoing what did not finish.

import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import { ApiClient } from './client.js';

const DEMO = resolve(fileURLToPath(import.meta.url), '../../data/demo');
const DEMO_LAYER = 'france_relief';

type Json = Record<string, unknown> & { _id: string; status: string; name?: string };

/** The marker of a demo under way, in the data folder. */
const pendingFile = (dataDir: string) => join(dataDir, 'demo.pending');

/** Whether a start must run the demo: on a new data folder, or to finish one a kill interrupted. */
export function demoWanted(dataDir: string, newFolder: boolean): boolean {
  return newFolder || existsSync(pendingFile(dataDir));
}

/** Marks the demo as under way; call before the new data folder's first state commit. */
export async function demoStarting(dataDir: string): Promise<void> {
  await writeFile(pendingFile(dataDir), `${new Date().toISOString()}\n`);
}

/** Runs the demo, or resumes an interrupted one; whatever the outcome, a later start does not run it again. */
export async function seedDemo(api: Hono, token: string, dataDir: string, resuming: boolean): Promise<void> {
  try {
    await scenario(api, token, resuming);
  } finally {
    await rm(pendingFile(dataDir), { force: true });
  }
}

async function scenario(app: Hono, token: string, resuming: boolean): Promise<void> {
  const api = new ApiClient((path, init) => Promise.resolve(app.request(path, init)), token);
  // a build takes what it takes: no deadline, as a user waiting at the console
  const until = async (path: string, done: string[], fail: string[]): Promise<Json> =>
    (await api.until(path, done, { fail, timeoutMs: Infinity, everyMs: 100 })).entity;
  await api.init();
  const D = api.d;
  const endpoint = await api.endpoint();
  const processing = await api.processing();

  /** What an interrupted run of the demo made under that name (exact), newest first. */
  const made = async (path: string, name: string, key = 'name'): Promise<Json[]> => {
    const list = (await api.must('GET', `${path}?${key}=${encodeURIComponent(name)}&limit=100`)) as Json[];
    return list.filter((x) => x[key] === name).reverse();
  };

  const deliver = async (name: string, file: string): Promise<string> => {
    for (const old of resuming ? await made(`${D}/uploads`, name) : []) {
      // a check caught by the kill runs again at start
      const u = old.status === 'CHECKING' ? await until(`${D}/uploads/${old._id}`, ['CLOSED', 'UNSTABLE', 'OPEN'], []) : old;
      if (u.status === 'CLOSED') return u._id;
      await api.must('DELETE', `${D}/uploads/${u._id}`); // a push or a close the kill cut: made again below
    }
    const u = await api.upload(name, 'EPSG:2154', `demo delivery: ${file}`);
    await api.push(u._id, { path: `data/${file}`, file: join(DEMO, file) }, true);
    await api.must('POST', `${D}/uploads/${u._id}/close`);
    await until(`${D}/uploads/${u._id}`, ['CLOSED'], ['UNSTABLE']);
    return u._id;
  };
  const compute = async (name: string, inputs: { upload: string[]; stored_data?: string[] }, parameters: Record<string, unknown>) => {
    for (const sd of resuming ? await made(`${D}/stored_data`, name) : []) {
      if (sd.status === 'GENERATED') return sd._id;
      const executions = (await api.must('GET', `${D}/processings/executions?limit=100`)) as Json[];
      const e = executions.find((x) => (x.output as { stored_data?: { _id: string } }).stored_data?._id === sd._id);
      if (e && e.status === 'CREATED') await api.must('POST', `${D}/processings/executions/${e._id}/launch`);
      if (e && ['CREATED', 'WAITING', 'PROGRESS'].includes(e.status)) {
        await until(`${D}/processings/executions/${e._id}`, ['SUCCESS'], ['FAILURE', 'ABORTED']);
        return sd._id;
      }
      await api.must('DELETE', `${D}/stored_data/${sd._id}`); // its build was interrupted: built again below
    }
    const e = await api.execute(inputs, parameters, name, processing);
    const done = await until(`${D}/processings/executions/${e._id}`, ['SUCCESS'], ['FAILURE', 'ABORTED']);
    return (done.output as { stored_data: { _id: string } }).stored_data._id;
  };

  console.log(
    resuming
      ? 'tuile: the demo was interrupted by a stop: resuming it'
      : 'tuile: empty data folder: running the reference scenario on the demo deliveries (France relief, Lambert-93)',
  );
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
  const confBody = (sd: string) => ({ type: 'WMTS-TMS', name: 'France relief', layer_name: DEMO_LAYER, type_infos: typeInfos(sd), getfeatureinfo: { stored_data: true } });
  const conf = (resuming ? (await made(`${D}/configurations`, DEMO_LAYER, 'layer_name'))[0] : undefined) ?? (await api.must<Json>('POST', `${D}/configurations`, confBody(north)));
  const offering =
    (resuming ? ((await api.must('GET', `${D}/configurations/${conf._id}/offerings`)) as Json[])[0] : undefined) ??
    (await api.must<Json>('POST', `${D}/configurations/${conf._id}/offerings`, { endpoint, open: true }));
  await until(`${D}/offerings/${offering._id}`, ['PUBLISHED'], ['UNSTABLE']);
  console.log(`tuile: demo: north published as ${DEMO_LAYER}; chaining the south on it`);

  const whole = await compute('france_relief_north_south', { upload: [await deliver('France relief, south', 'france_relief_south_2154.tif')], stored_data: [north] }, {});
  await api.synchronise({ configuration: conf._id, offering: offering._id }, confBody(whole));
  // PUBLISHED in the state means switched: a commit is visible once every serving process follows it
  console.log(`tuile: demo: ${DEMO_LAYER} synchronised on the chained pyramid (north + south)`);
}
