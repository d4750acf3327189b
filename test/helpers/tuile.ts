// Test helper: tuile as a user runs it (`node dist/main.js` in its own process, real HTTP on 127.0.0.1)
// and the scenario client of its management API (src/client.ts) with the tests' token.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { ApiClient } from '../../src/client.js';
import { ROOT, tempDir } from './fixtures.js';

export const TOKEN = 'test-admin-token-0123456789';

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface TuileProcess {
  base: string;
  proc: ChildProcess;
  output(): string;
  /** SIGTERM (or another signal) and wait for the exit; resolves with the exit code or signal */
  stop(signal?: NodeJS.Signals): Promise<number | string | null>;
}

/**
 * Starts `node dist/main.js` on a data folder and waits until it serves. `detached`: in a process group of
 * its own (its pid), which a test can kill whole, build processes included, as a machine that dies would.
 */
export async function startTuile(dataDir: string, env: Record<string, string> = {}, opts: { detached?: boolean } = {}): Promise<TuileProcess> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let out = '';
  const proc = spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: String(port),
      TUILE_DATA_DIR: dataDir,
      TUILE_DEMO: '0',
      TUILE_WORKERS: '1',
      TUILE_ADMIN_TOKEN: TOKEN,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.detached,
  });
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 120_000;
  while (!/tuile: serving \d+ layer/.test(out)) {
    if (Date.now() > deadline || proc.exitCode !== null || proc.signalCode !== null) throw new Error(`tuile did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    proc,
    output: () => out,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode ?? proc.signalCode);
        proc.once('exit', (code, sig) => resolve(code ?? sig));
        proc.kill(signal);
      }),
  };
}

export type { Reply } from '../../src/client.js';

/** The scenario client (src/client.ts) with the tests' admin token. */
export class Api extends ApiClient {
  constructor(base: string, token: string = TOKEN) {
    super(base, token);
  }
}

/**
 * A tuile on a new temporary data folder for the tests of the file or describe block it is called in: started
 * before them (`ready` gets it and a client of its API), stopped and its folder removed after.
 */
export function withTuile(prefix: string, env: Record<string, string>, ready: (t: TuileProcess, api: Api) => void): { dataDir: string } {
  const data = tempDir(prefix);
  let t: TuileProcess | undefined;
  beforeAll(async () => {
    t = await startTuile(data.path, env);
    const api = new Api(t.base);
    await api.init();
    ready(t, api);
  });
  afterAll(async () => {
    await t?.stop();
    data.cleanup();
  });
  return { dataDir: data.path };
}
