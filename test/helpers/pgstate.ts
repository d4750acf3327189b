// Test helper: a PostgreSQL database of its own for a test file, on the server named by TUILE_TEST_STATE_URL
// (the environment, else `.tmp/engines.env`, which `scripts/engines.sh up` writes). Without one, the tests
// that need it log one line and do not run, unless TUILE_REQUIRE_ENGINES=1 (CI), where that fails.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { ROOT } from './fixtures.js';

/** The PostgreSQL server of the tests, or undefined. */
export function testStateUrl(): string | undefined {
  if (process.env.TUILE_TEST_STATE_URL) return process.env.TUILE_TEST_STATE_URL;
  const file = join(ROOT, '.tmp/engines.env');
  if (!existsSync(file)) return undefined;
  const line = readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('TUILE_TEST_STATE_URL='));
  return line?.slice('TUILE_TEST_STATE_URL='.length).trim() || undefined;
}

/** Whether the tests of `what` cannot run (logged once, or failed when engines are required). */
export function noPostgres(what: string): boolean {
  if (testStateUrl()) return false;
  expect(process.env.TUILE_REQUIRE_ENGINES, 'PostgreSQL is required: TUILE_REQUIRE_ENGINES=1 (TUILE_TEST_STATE_URL)').not.toBe('1');
  console.warn(`${what}: no PostgreSQL (TUILE_TEST_STATE_URL, or .tmp/engines.env from scripts/engines.sh up): these tests did NOT run`);
  return true;
}

/** A new, empty database on the test server; `drop` removes it (its connections must be closed). */
export async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const server = testStateUrl();
  if (!server) throw new Error('no TUILE_TEST_STATE_URL');
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
