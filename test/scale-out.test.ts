// examples/scale-out.sh as a user runs it: `up` on engines already up (ENGINES_ENV) prints NODE_A, NODE_B,
// TOKEN and PID_A, two nodes answer there with that admin token, node A is the process group PID_A, the
// nodes have a database of their own; `down` stops and removes everything `up` started and nothing else.
// Skipped with one logged line without the engines, required when TUILE_REQUIRE_ENGINES=1.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { enginesOrSkip } from './helpers/engines.js';
import { ROOT } from './helpers/fixtures.js';

const run = promisify(execFile);
const SCRIPT = join(ROOT, 'examples/scale-out.sh');
const work = mkdtempSync(join(tmpdir(), 'tuile-scale-out-'));
const dir = join(work, 'scale-out');

afterAll(async () => {
  // a failed assertion must not leave nodes running
  if (existsSync(dir)) await run('bash', [SCRIPT, 'down'], { env: { ...process.env, SCALE_OUT_DIR: dir } }).catch(() => {});
  rmSync(work, { recursive: true, force: true });
});

function alive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function databases(stateUrl: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: stateUrl });
  await c.connect();
  try {
    return (await c.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'scaleout_%'`)).rows.map((r) => r.datname);
  } finally {
    await c.end();
  }
}

describe('examples/scale-out.sh', () => {
  it('starts two nodes on the engines, prints where they are, and down removes them', async () => {
    const e = enginesOrSkip('scale-out.test');
    if (!e) return;
    const envFile = join(work, 'engines.env');
    writeFileSync(envFile, Object.entries(e.env).map(([k, v]) => `${k}=${v}\n`).join(''));
    const before = await databases(e.stateUrl);
    const env = { ...process.env, SCALE_OUT_DIR: dir, ENGINES_ENV: envFile };

    const up = await run('bash', [SCRIPT, 'up'], { env, timeout: 180_000 });
    const printed = Object.fromEntries(up.stdout.trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2)));
    expect(Object.keys(printed)).toEqual(['NODE_A', 'NODE_B', 'TOKEN', 'PID_A', 'PID_B']);
    expect(printed.NODE_A).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(printed.NODE_B).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(printed.NODE_A).not.toBe(printed.NODE_B);
    const pidA = Number(printed.PID_A);
    const pidB = Number(printed.PID_B);

    const mine = (await databases(e.stateUrl)).filter((d) => !before.includes(d));
    expect(mine).toHaveLength(1);

    for (const [base, pgid] of [
      [printed.NODE_A, pidA],
      [printed.NODE_B, pidB],
    ] as const) {
      const health = await fetch(`${base}/health`);
      expect(health.status).toBe(200);
      // the serving process that answered belongs to the printed process group (field 5 of /proc/pid/stat)
      const servingPid = ((await health.json()) as { pid: number }).pid;
      const stat = readFileSync(`/proc/${servingPid}/stat`, 'utf8');
      expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])).toBe(pgid);
      expect((await fetch(`${base}/api/users/me`, { headers: { Authorization: `Bearer ${printed.TOKEN}` } })).status).toBe(200);
      expect((await fetch(`${base}/api/users/me`)).status).toBe(401);
    }

    await run('bash', [SCRIPT, 'down'], { env: { ...process.env, SCALE_OUT_DIR: dir }, timeout: 60_000 });
    expect(alive(pidA)).toBe(false);
    expect(alive(pidB)).toBe(false);
    await expect(fetch(`${printed.NODE_A}/health`)).rejects.toThrow();
    expect(existsSync(dir)).toBe(false);
    // its database dropped, in engines it did not start and left up (this query reaches them)
    expect(await databases(e.stateUrl)).toEqual(before);
  });
});
