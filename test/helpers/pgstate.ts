// Test helper: a PostgreSQL database of its own for a test file, on the engines' server (helpers/engines.ts
// reads their settings: one reader of the env file scripts/engines.sh writes). Without engines, the tests
// that need them log one line and do not run, unless TUILE_REQUIRE_ENGINES=1 (CI), where that fails.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { engines, enginesOrSkip } from './engines.js';

/** The PostgreSQL server of the tests, or undefined. */
export function testStateUrl(): string | undefined {
  return engines()?.stateUrl;
}

/** Whether the tests of `what` cannot run (logged once, or failed when engines are required). */
export function noPostgres(what: string): boolean {
  return enginesOrSkip(what) === undefined;
}

/** A new, empty database on the test server; `drop` removes it (its connections must be closed). */
export async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const server = testStateUrl();
  if (!server) throw new Error('no engines: no PostgreSQL server for the tests');
  const name = `tuile_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(server);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: server });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
