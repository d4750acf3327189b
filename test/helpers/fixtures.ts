// Test helpers: fixture paths, temporary folders, and running the CLI as a user would.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { expect } from 'vitest';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = join(ROOT, 'test/fixtures');

export function fixture(name: string): string {
  const p = join(FIXTURES, name);
  if (!existsSync(p)) throw new Error(`missing fixture ${p}`);
  return p;
}

export function tempDir(prefix = 'tuile-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (npm test builds dist/ first). */
export function runCli(args: string[], opts: { cwd?: string } = {}): CliResult {
  const cli = join(ROOT, 'dist/cli.js');
  if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run `npm run build` (npm test does it)');
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: opts.cwd ?? ROOT, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A refused build: non-zero exit, one line on stderr saying why, no output folder, no temporary left. */
export function expectRefused(r: CliResult, out: string, message: RegExp): void {
  expect(r.status).not.toBe(0);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^tuile: /);
  expect(r.stderr).toMatch(message);
  expect(existsSync(out)).toBe(false);
  expect(readdirSync(dirname(out)).filter((f) => f.includes('.tmp'))).toEqual([]);
}
