// What the benchmark and interop scripts share: a tuile process of their own (`node dist/main.js`, built
// first) on a free port of 127.0.0.1, ready once it prints its banner.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * Starts tuile on `dataDir` with the admin token `token`, `workers` serving processes and `env` added to the
 * usual settings; resolves with the process, its base URL and what it printed so far (stdout and stderr). A
 * process that exits or does not print its banner within `timeoutMs` is killed, and the error shows its output.
 */
export async function startTuile({ dataDir, token, workers = 2, env = {}, timeoutMs = 120_000 }) {
  const port = await freePort();
  let out = '';
  const proc = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), TUILE_DATA_DIR: dataDir, TUILE_DEMO: '0', TUILE_WORKERS: String(workers), TUILE_ADMIN_TOKEN: token, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const deadline = Date.now() + timeoutMs;
  while (!/tuile: serving \d+ layer/.test(out)) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      throw new Error(`tuile did not start (${proc.exitCode !== null ? `exit ${proc.exitCode}` : `no banner in ${timeoutMs / 1000} s`}):\n${out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, base: `http://127.0.0.1:${port}`, output: () => out };
}
