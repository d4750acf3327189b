// Restart recovery: tuile killed (SIGKILL) during an execution starts again with that execution FAILURE
// and a log line saying why, no partial pyramid, and everything else intact and served.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixture, tempDir } from '../helpers/fixtures.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const data = tempDir('tuile-restart-');
let t: TuileProcess | undefined;

afterAll(async () => {
  await t?.stop('SIGKILL');
  data.cleanup();
});

/** Build processes of this data folder still running (a killed server's child stops on its own). */
function buildChildren(): number {
  try {
    return execFileSync('pgrep', ['-f', 'jobs.js --child'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

describe('a restart after a kill during an execution', () => {
  it('marks the execution FAILURE, removes its output, and serves what was published', async () => {
    t = await startTuile(data.path);
    let api = new Api(t.base);
    await api.init();
    // a published layer that must survive
    const north = await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]);
    const e1 = await api.execute({ upload: [north._id] }, { compression: 'png', bottom: 6 }, 'north');
    const done = (await api.until(`${api.d}/processings/executions/${e1._id}`, ['SUCCESS', 'FAILURE'])).entity;
    expect(done.status).toBe('SUCCESS');
    const conf = (await api.call('POST', `${api.d}/configurations`, api.configuration('kept', done.output.stored_data._id, '6'))).body;
    const off = (await api.call('POST', `${api.d}/configurations/${conf._id}/offerings`, { endpoint: await api.endpoint() })).body;
    await api.until(`${api.d}/offerings/${off._id}`, ['PUBLISHED']);
    const before = await fetch(`${t.base}/tiles/kept/5/16/11.png`);
    expect(before.status).toBe(200);
    const etag = before.headers.get('etag');

    // a long build, killed in the middle
    const big = await api.deliver([{ path: 'miriam.tif', file: fixture('modis_miriam_4326.tif') }], 'EPSG:4326', 'miriam');
    expect(big.status).toBe('CLOSED');
    const e2 = await api.execute({ upload: [big._id] }, { compression: 'jpg', bottom: 12 }, 'miriam');
    const out = e2.output.stored_data._id;
    await api.building(`${api.d}/processings/executions/${e2._id}`);
    expect(await t.stop('SIGKILL')).toBe('SIGKILL');
    const deadline = Date.now() + 30_000;
    while (buildChildren() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));

    t = await startTuile(data.path);
    api = new Api(t.base);
    await api.init();
    const e = (await api.call('GET', `${api.d}/processings/executions/${e2._id}`)).body;
    expect(e.status).toBe('FAILURE');
    const logs = (await api.call('GET', `${api.d}/processings/executions/${e2._id}/logs`)).body as string[];
    expect(logs[logs.length - 1]).toMatch(/FAILURE: the server stopped during the execution/);
    expect((await api.call('GET', `${api.d}/stored_data/${out}`)).body.status).toBe('UNSTABLE');
    expect(existsSync(join(data.path, 'pyramids', out))).toBe(false);
    expect(readdirSync(join(data.path, 'pyramids')).filter((n) => n.includes('.tmp-'))).toEqual([]);
    // everything else is intact and served
    expect((await api.call('GET', `${api.d}/offerings/${off._id}`)).body.status).toBe('PUBLISHED');
    expect((await api.call('GET', `${api.d}/executions/${e1._id}`.replace('/executions', '/processings/executions'))).body.status).toBe('SUCCESS');
    const after = await fetch(`${t.base}/tiles/kept/5/16/11.png`);
    expect(after.status).toBe(200);
    expect(after.headers.get('etag')).toBe(etag);
    // the failed output can be deleted, and the queue still runs executions
    expect((await api.call('DELETE', `${api.d}/stored_data/${out}`)).status).toBe(204);
    const e3 = await api.execute({ upload: [north._id] }, { compression: 'png', bottom: 4 }, 'again');
    expect((await api.until(`${api.d}/processings/executions/${e3._id}`, ['SUCCESS', 'FAILURE'])).entity.status).toBe('SUCCESS');
  });
});
