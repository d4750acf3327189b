// examples/tutorial.sh, the reference scenario with curl, run as a user would against `node dist/main.js`:
// it must end with exit code 0, leaving layer `tutorial` published on the chained pyramid (north + south).
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers/fixtures.js';
import { Api, TOKEN, startTuile, type TuileProcess } from './helpers/tuile.js';

const hasCurl = spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out }));
  });
}

describe('examples/tutorial.sh', () => {
  const data = tempDir('tuile-tutorial-');
  let t: TuileProcess;

  beforeAll(async () => {
    if (hasCurl) t = await startTuile(data.path);
  });

  afterAll(async () => {
    await t?.stop();
    data.cleanup();
  });

  it.skipIf(!hasCurl)('runs the reference scenario to the end and leaves layer tutorial serving the south', { timeout: 120_000 }, async () => {
    // the default layer name, and no TUILE_DATA_DIR to read the token from: TOKEN is what is used.
    // About 15 s on an idle 2-core machine; TIMEOUT bounds each wait of the script below the test's timeout
    const { LAYER: _layer, TUILE_DATA_DIR: _dir, ...env } = process.env;
    const r = await run('bash', [join('examples', 'tutorial.sh')], { ...env, BASE: t.base, TOKEN, TIMEOUT: '60' });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('HTTP 200');

    const api = new Api(t.base);
    await api.init();
    const offerings = await api.call('GET', `${api.d}/offerings?layer_name=tutorial`);
    expect(offerings.status).toBe(200);
    expect(offerings.body).toHaveLength(1);
    const o = offerings.body[0];
    expect(o.status).toBe('PUBLISHED');
    expect(o.configuration.status).toBe('PUBLISHED');
    // the configuration uses the chained pyramid, which uses the north one
    const conf = await api.call('GET', `${api.d}/configurations/${o.configuration._id}`);
    const whole = conf.body.type_infos.used_data[0].stored_data;
    const deps = await api.call('GET', `${api.d}/stored_data/${whole}/dependencies`);
    expect(deps.body.use).toHaveLength(1);
    expect(deps.body.use[0].name).toBe('tutorial_north');
    // and the offering serves it: a tile of the south (Languedoc) and one of the north (Paris basin)
    for (const tile of ['7/64/46', '7/64/43']) {
      const res = await fetch(`${t.base}/tiles/tutorial/${tile}.png`);
      expect(res.status, tile).toBe(200);
      expect(res.headers.get('content-type')).toBe('image/png');
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    }
  });
});
