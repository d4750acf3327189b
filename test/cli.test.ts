// The CLI as the README starts it: `npx tuile ...` right after `npm install && npm run build` on a fresh clone.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers/fixtures.js';

describe('npx tuile on a fresh checkout', () => {
  const tmp = tempDir('tuile-clone-');
  afterAll(() => tmp.cleanup());

  it('has an executable bin after npm run build, and npx runs it', () => {
    // a clone's files (no dist/), with the installed dependencies
    const clone = join(tmp.path, 'tuile');
    mkdirSync(clone);
    for (const f of ['package.json', 'tsconfig.json', 'src']) cpSync(join(ROOT, f), join(clone, f), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(clone, 'node_modules'));
    const env = { ...process.env, npm_config_cache: join(tmp.path, 'npm-cache'), npm_config_update_notifier: 'false' };
    const built = spawnSync('npm', ['run', 'build'], { cwd: clone, env, encoding: 'utf8', timeout: 120_000 });
    expect(built.status, built.stderr).toBe(0);
    const bin = join(clone, 'dist/cli.js');
    // npx runs the bin file itself, through its #! line: without the execute bit the shell says "Permission
    // denied" (npm chmods it only when the user running npx owns the file, and only on its first run)
    expect(statSync(bin).mode & 0o111).toBe(0o111);
    const direct = spawnSync(bin, ['--help'], { cwd: clone, encoding: 'utf8' });
    expect(direct.error).toBeUndefined();
    expect(direct.status).toBe(0);
    expect(direct.stdout).toMatch(/^usage:\n {2}tuile build/);
    const npx = spawnSync('npx', ['--no-install', 'tuile', 'inspect', join(tmp.path, 'nowhere')], { cwd: clone, env, encoding: 'utf8', timeout: 120_000 });
    expect(npx.status).toBe(1);
    expect(npx.stderr).toMatch(/^tuile: .*nowhere/);
  });
});
