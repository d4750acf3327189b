// A data folder on a small filesystem that fills, or turns read-only, under a running tuile: the state
// writes that fail are retried or repaired at the next start, so that no execution stays PROGRESS and no
// stored data GENERATING with nothing running, abort included. Needs to mount a tmpfs and chattr (root);
// skips with a logged reason where it cannot.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from '../helpers/fixtures.js';
import { Api, startTuile, type TuileProcess } from '../helpers/tuile.js';

const mnt = mkdtempSync(join(tmpdir(), 'tuile-disk-'));
let mounted = false;
let why = '';
let t: TuileProcess | undefined;

function mount(...opts: string[]): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', opts.join(','), 'tmpfs', mnt], { stdio: 'pipe' });
}
/** The data folder itself immutable: no state snapshot can be written, while a build under pyramids/ goes on. */
function freeze(on: boolean): void {
  execFileSync('chattr', [on ? '+i' : '-i', mnt], { stdio: 'pipe' });
}

let frozenWhy = '';

beforeAll(() => {
  try {
    mount('size=1200k', 'mode=0700');
    mounted = true;
  } catch (err) {
    why = String((err as { stderr?: Buffer }).stderr ?? err).trim();
    return;
  }
  try {
    freeze(false);
  } catch (err) {
    frozenWhy = String((err as { stderr?: Buffer }).stderr ?? err).trim();
  }
});

afterAll(async () => {
  await t?.stop('SIGKILL');
  if (mounted) execFileSync('umount', ['-l', mnt]);
  rmSync(mnt, { recursive: true, force: true });
});

function skipped(needsFreeze = false): boolean {
  if (!mounted) {
    console.warn(`disk.test: cannot mount a tmpfs (${why}): the full-disk checks did NOT run`);
    return true;
  }
  if (needsFreeze && frozenWhy) {
    console.warn(`disk.test: chattr +i is not available (${frozenWhy}): the failing-write checks did NOT run`);
    return true;
  }
  return false;
}

/** Nothing is running: no execution or stored data may say otherwise. */
async function expectSettled(api: Api): Promise<void> {
  const executions = (await api.call('GET', `${api.d}/processings/executions?limit=100`)).body as any[];
  expect(executions.filter((e) => e.status === 'PROGRESS' || e.status === 'WAITING').map((e) => e.status)).toEqual([]);
  const stored = (await api.call('GET', `${api.d}/stored_data?limit=100`)).body as any[];
  expect(stored.filter((s) => s.status === 'GENERATING' || s.status === 'MODIFYING').map((s) => s.status)).toEqual([]);
}

describe('a data folder on a 1.2 MB filesystem', () => {
  let api: Api;
  let north = '';

  it('filling during a build: the execution ends FAILURE, its stored data UNSTABLE, the disk is given back', async (ctx) => {
    if (skipped()) return ctx.skip();
    t = await startTuile(mnt);
    api = new Api(t.base);
    await api.init();
    // levels 0-9 of the north take about 1.9 MB
    north = (await api.deliver([{ path: 'north.tif', file: fixture('france_relief_north_2154.tif') }]))._id;
    const e = await api.execute({ upload: [north] }, { compression: 'png', bottom: 9 }, 'too big');
    const done = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE'])).entity;
    expect(done.status).toBe('FAILURE');
    const logs = (await api.call('GET', `${api.d}/processings/executions/${e._id}/logs`)).body as string[];
    expect(logs.join('\n')).toMatch(/ENOSPC|no space/i);
    expect((await api.call('GET', `${api.d}/stored_data/${e.output.stored_data._id}`)).body.status).toBe('UNSTABLE');
    await expectSettled(api);
    expect(readdirSync(join(mnt, 'pyramids'))).toEqual([]);
    // and the folder still works: a small build fits
    const ok = await api.execute({ upload: [north] }, { compression: 'png', bottom: 5 }, 'small');
    expect((await api.until(`${api.d}/processings/executions/${ok._id}`, ['SUCCESS', 'FAILURE'])).entity.status).toBe('SUCCESS');
  });

  it('state writes failing during a build: its end is saved once they work again', async (ctx) => {
    if (skipped(true)) return ctx.skip();
    const e = await api.execute({ upload: [north] }, { compression: 'png', bottom: 7 }, 'frozen');
    await api.until(`${api.d}/processings/executions/${e._id}`, ['PROGRESS']);
    freeze(true);
    try {
      // the build succeeds, and its end cannot be written: tuile tries again
      const deadline = Date.now() + 60_000;
      const tries = () => t!.output().match(new RegExp(`execution ${e._id}: its end cannot be saved`, 'g'))?.length ?? 0;
      while (tries() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(t!.output()).toMatch(/its end cannot be saved \(.*(EPERM|not permitted)/);
      // and it tried again, in vain, before the writes work again
      expect(tries()).toBeGreaterThanOrEqual(2);
    } finally {
      freeze(false);
    }
    const done = (await api.until(`${api.d}/processings/executions/${e._id}`, ['SUCCESS', 'FAILURE'], 30_000)).entity;
    expect(done.status).toBe('SUCCESS');
    expect((await api.call('GET', `${api.d}/stored_data/${e.output.stored_data._id}`)).body.status).toBe('GENERATED');
    await expectSettled(api);
    expect(t!.output()).not.toMatch(/Unhandled|unhandled/);
  });

  it('killed while state writes fail during a build: the next start repairs the execution and its stored data', async (ctx) => {
    if (skipped(true)) return ctx.skip();
    const e = await api.execute({ upload: [north] }, { compression: 'png', bottom: 9 }, 'killed');
    await api.until(`${api.d}/processings/executions/${e._id}`, ['PROGRESS']);
    freeze(true);
    try {
      // killed once a state write of this build has failed (its progress, or its end if it is that quick)
      const failed = new RegExp(`execution ${e._id}: (progress not saved|its end cannot be saved)`);
      const deadline = Date.now() + 60_000;
      while (!failed.test(t!.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(t!.output()).toMatch(failed);
      expect(await t!.stop('SIGKILL')).toBe('SIGKILL');
    } finally {
      freeze(false);
    }
    t = await startTuile(mnt);
    api = new Api(t.base);
    await api.init();
    expect((await api.call('GET', `${api.d}/processings/executions/${e._id}`)).body.status).toBe('FAILURE');
    expect((await api.call('GET', `${api.d}/stored_data/${e.output.stored_data._id}`)).body.status).toBe('UNSTABLE');
    await expectSettled(api);
    expect(readdirSync(join(mnt, 'pyramids')).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('abort, then a kill before the build has stopped: no stored data stays GENERATING', async (ctx) => {
    if (skipped()) return ctx.skip();
    const e = await api.execute({ upload: [north] }, { compression: 'png', bottom: 9 }, 'aborted');
    await api.until(`${api.d}/processings/executions/${e._id}`, ['PROGRESS']);
    expect((await api.call('POST', `${api.d}/processings/executions/${e._id}/abort`)).status).toBe(200);
    expect(await t!.stop('SIGKILL')).toBe('SIGKILL');
    t = await startTuile(mnt);
    api = new Api(t.base);
    await api.init();
    expect((await api.call('GET', `${api.d}/processings/executions/${e._id}`)).body.status).toBe('ABORTED');
    expect((await api.call('GET', `${api.d}/stored_data/${e.output.stored_data._id}`)).body.status).toBe('UNSTABLE');
    await expectSettled(api);
    // and with the server up, an abort ends the same way
    const e2 = await api.execute({ upload: [north] }, { compression: 'png', bottom: 9 }, 'aborted live');
    await api.until(`${api.d}/processings/executions/${e2._id}`, ['PROGRESS']);
    expect((await api.call('POST', `${api.d}/processings/executions/${e2._id}/abort`)).status).toBe(200);
    await api.until(`${api.d}/stored_data/${e2.output.stored_data._id}`, ['UNSTABLE'], 30_000);
    await expectSettled(api);
  });
});
