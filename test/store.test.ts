// The state stores: serial updates, commits shown after their listeners, persistence; one suite run
// against both implementations (the JSON file, and PostgreSQL when a server is given: helpers/pgstate.ts).
// The JSON file's own guarantee: a write interrupted at any step leaves the previous or the new state on
// disk, never a broken file, whether it fails (injected) or the process is killed. PostgreSQL's own: nodes
// on one database see each other's commits, never lose one to a concurrent update, claim an execution once.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PostgresStateStore } from '../src/state/postgres.js';
import { JsonStateStore, type StateStore, type WriteStep } from '../src/state/store.js';
import { ROOT, tempDir } from './helpers/fixtures.js';
import { freshDatabase, noPostgres } from './helpers/pgstate.js';

const dir = tempDir('tuile-store-');
afterAll(() => dir.cleanup());

function counter(s: { admin_user: string; datastores: Record<string, unknown> }): number {
  return Object.keys(s.datastores).length;
}

async function bump(store: StateStore): Promise<void> {
  await store.update((s) => {
    const n = counter(s);
    s.datastores[`d${n}`] = { _id: `d${n}`, name: `n${n}` } as never;
  });
}

/** Opens a store on a named place (a file, a database): the same name opens the same state again. */
type Opener = (place: string) => Promise<StateStore>;

const databases = new Map<string, { url: string; drop: () => Promise<void> }>();
const opened: StateStore[] = [];
afterAll(async () => {
  for (const s of opened) await s.close();
  for (const d of databases.values()) await d.drop();
});

async function database(place: string): Promise<string> {
  if (!databases.has(place)) databases.set(place, await freshDatabase());
  return databases.get(place)!.url;
}

const OPENERS: [string, Opener | null][] = [
  ['JSON file', async (place) => JsonStateStore.open(join(dir.path, `${place}.json`))],
  [
    'PostgreSQL',
    noPostgres('store.test (PostgreSQL)')
      ? null
      : async (place) => {
          const store = await PostgresStateStore.open(await database(place), { node: `node-${opened.length}` });
          opened.push(store);
          return store;
        },
  ],
];

for (const [name, open] of OPENERS) {
  if (!open) continue;
  describe(`StateStore on ${name}`, () => {
    it('starts empty, persists each update, and reopens what it wrote', async () => {
      const store = await open('a');
      expect(store.isNew).toBe(true);
      expect(counter(store.state)).toBe(0);
      await bump(store);
      await bump(store);
      const again = await open('a');
      expect(again.isNew).toBe(false);
      expect(counter(again.state)).toBe(2);
      expect(again.state.admin_user).toBe(store.state.admin_user);
    });

    it('runs updates one after the other, and a failing update changes nothing', async () => {
      const store = await open('b');
      await Promise.all(Array.from({ length: 20 }, () => bump(store)));
      expect(counter(store.state)).toBe(20);
      await expect(
        store.update((s) => {
          s.datastores.x = {} as never;
          throw new Error('refused');
        }),
      ).rejects.toThrow('refused');
      expect(store.state.datastores.x).toBeUndefined();
      expect(counter((await open('b')).state)).toBe(20);
    });

    it('shows a commit to readers only after its listeners ran', async () => {
      const store = await open('c');
      const seen: number[] = [];
      store.onCommit(async (next) => {
        seen.push(counter(store.state), counter(next));
      });
      await bump(store);
      expect(seen).toEqual([0, 1]);
      expect(counter(store.state)).toBe(1);
    });

    it('persists deletions and keeps the entities it did not touch', async () => {
      const store = await open('d');
      await bump(store);
      await bump(store);
      await store.update((s) => {
        delete s.datastores.d0;
        s.executions.x = { _id: 'x', datastore: 'd1', status: 'WAITING' } as never;
      });
      const again = await open('d');
      expect(Object.keys(again.state.datastores)).toEqual(['d1']);
      expect(again.state.executions.x).toEqual({ _id: 'x', datastore: 'd1', status: 'WAITING' });
      expect(again.isNew).toBe(false);
    });
  });
}

describe('JsonStateStore', () => {
  for (const step of ['open', 'write', 'fsync', 'previous', 'rename', 'dirsync'] as WriteStep[]) {
    it(`a write failing at '${step}' leaves the previous or the new state, and no temporary file`, async () => {
      const file = join(dir.path, `fail-${step}.json`);
      let failAt: WriteStep | null = null;
      const store = await JsonStateStore.open(file, {
        beforeStep: (s) => {
          if (s === failAt) throw new Error(`crash at ${s}`);
        },
      });
      await bump(store);
      failAt = step;
      const r = await bump(store).then(
        () => 'committed',
        () => 'refused',
      );
      const onDisk = counter(JSON.parse(readFileSync(file, 'utf8')));
      // before the rename the old state stays (and the update is refused); after it, the new one
      if (step === 'dirsync') {
        expect(r).toBe('committed');
        expect(onDisk).toBe(2);
      } else {
        expect(r).toBe('refused');
        expect(onDisk).toBe(1);
        expect(counter(store.state)).toBe(1);
      }
      expect(readdirSync(dir.path).filter((n) => n.startsWith(`.fail-${step}`))).toEqual([]);
    });
  }

  it('keeps the replaced snapshot as <file>.1 and starts from it when <file> cannot be read', async () => {
    const bads = ['{"version":1,"datas', '', '{"version":2}', '{"version":1}'];
    for (const [i, bad] of bads.entries()) {
      const file = join(dir.path, `gen${i}.json`);
      const store = await JsonStateStore.open(file);
      await bump(store);
      await bump(store);
      expect(counter(JSON.parse(readFileSync(`${file}.1`, 'utf8')))).toBe(1);
      writeFileSync(file, bad);
      const again = await JsonStateStore.open(file);
      expect(again.isNew).toBe(false);
      expect(counter(again.state)).toBe(1);
      // the unreadable file is set aside, so that the next write does not make it the previous generation
      expect(readdirSync(dir.path).filter((n) => n.startsWith(`gen${i}.json.corrupt-`))).toHaveLength(1);
      expect(existsSync(file)).toBe(false);
      await bump(again);
      expect(counter(JSON.parse(readFileSync(file, 'utf8')))).toBe(2);
      expect(counter(JSON.parse(readFileSync(`${file}.1`, 'utf8')))).toBe(1);
    }
    // neither generation readable: an error, not an empty state
    const file = join(dir.path, 'gen0.json');
    writeFileSync(file, '{');
    writeFileSync(`${file}.1`, '{');
    await expect(JsonStateStore.open(file)).rejects.toThrow(/no readable previous generation/);
  });

  it('a process killed while writing, again and again, always leaves a whole snapshot', async () => {
    const file = join(dir.path, 'killed.json');
    const script = join(dir.path, 'writer.mjs');
    writeFileSync(
      script,
      `import { JsonStateStore } from ${JSON.stringify(join(ROOT, 'dist/state/store.js'))};
       const store = await JsonStateStore.open(${JSON.stringify(file)});
       // a large state makes each write long enough to be caught in the middle
       const pad = 'x'.repeat(200000);
       process.send('ready');
       for (;;) await store.update((s) => { const n = Object.keys(s.datastores).length; s.datastores['d' + n] = { pad }; });`,
    );
    let last = 0;
    for (let round = 0; round < 8; round++) {
      const child = spawn(process.execPath, [script], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      await new Promise((r) => child.once('message', r));
      await new Promise((r) => setTimeout(r, 30 + round * 17));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const store = await JsonStateStore.open(file);
      const n = counter(store.state);
      expect(n).toBeGreaterThanOrEqual(last);
      last = n;
    }
    expect(last).toBeGreaterThan(0);
    // the temporary files of the killed writers were cleaned at the last open
    expect(readdirSync(dir.path).filter((n) => n.startsWith('.killed.json.'))).toEqual([]);
  });
});

describe('PostgresStateStore: nodes on one database', () => {
  const skip = noPostgres('store.test (PostgreSQL nodes)');
  const node = async (url: string, name: string) => {
    const store = await PostgresStateStore.open(url, { node: name });
    opened.push(store);
    return store;
  };
  const sql = async (url: string, text: string, params: unknown[] = []) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(text, params)).rows;
    } finally {
      await c.end();
    }
  };

  it('migrates once when several nodes start at once, and only one finds the database new', async () => {
    if (skip) return;
    const url = await database('migrate');
    const nodes = await Promise.all([0, 1, 2, 3].map((i) => node(url, `m${i}`)));
    expect(nodes.filter((n) => n.isNew)).toHaveLength(1);
    expect(new Set(nodes.map((n) => n.state.admin_user)).size).toBe(1);
    expect(await sql(url, 'SELECT version FROM schema_migrations ORDER BY version')).toEqual([{ version: 1 }, { version: 2 }]);
  });

  it("a commit through one node reaches the other's listeners within a second, deletions too", async () => {
    if (skip) return;
    const url = await database('notify');
    const [a, b] = [await node(url, 'a'), await node(url, 'b')];
    const seen: { at: number; count: number }[] = [];
    b.onCommit((next) => void seen.push({ at: Date.now(), count: counter(next) }));
    const t0 = Date.now();
    await bump(a);
    await bump(a);
    await expect.poll(() => counter(b.state), { timeout: 1000, interval: 20 }).toBe(2);
    expect(seen.at(-1)!.count).toBe(2);
    expect(seen.at(-1)!.at - t0).toBeLessThan(1000);
    await a.update((s) => void delete s.datastores.d0);
    await expect.poll(() => Object.keys(b.state.datastores), { timeout: 1000, interval: 20 }).toEqual(['d1']);
  });

  it('a node whose notifications are cut catches up through its version check, and listens again', async () => {
    if (skip) return;
    const url = await database('cut');
    const [a, b] = [await node(url, 'a'), await node(url, 'b')];
    // every connection that last ran LISTEN: both nodes' notification clients
    const cut = await sql(url, "SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
    expect(cut.length).toBeGreaterThanOrEqual(2);
    await bump(a);
    await expect.poll(() => counter(b.state), { timeout: 3000, interval: 20 }).toBe(1);
    // listening again: the next commit arrives by notification, well within the second
    await expect.poll(async () => (await sql(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"))[0].n, { timeout: 5000 }).toBe(2);
    const t0 = Date.now();
    await bump(a);
    await expect.poll(() => counter(b.state), { timeout: 1000, interval: 10 }).toBe(2);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('serialises the updates of every node: none is lost, and only the changed entities are written', async () => {
    if (skip) return;
    const url = await database('serial');
    const [a, b] = [await node(url, 'a'), await node(url, 'b')];
    // each update reads the count it writes: two nodes interleaving them would lose some
    await Promise.all(Array.from({ length: 40 }, (_, i) => bump(i % 2 ? a : b)));
    await expect.poll(() => [counter(a.state), counter(b.state)], { timeout: 2000, interval: 20 }).toEqual([40, 40]);
    const rows = await sql(url, 'SELECT id, version FROM tuile_datastores ORDER BY version');
    expect(rows).toHaveLength(40);
    // one entity written by each update: d0 by the first, d39 by the last
    expect(rows.map((r) => Number(r.version))).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await node(url, 'c')).state).toEqual(a.state);
  });

  it('refuses a text PostgreSQL cannot store, and changes nothing', async () => {
    if (skip) return;
    const store = await node(await database('nul'), 'a');
    await expect(store.update((s) => void (s.datastores.x = { _id: 'x', name: 'a\u0000b' } as never))).rejects.toThrow(/NUL character/);
    expect(store.state.datastores.x).toBeUndefined();
    await bump(store);
    expect(counter(store.state)).toBe(1);
  });

  it('claims an execution for exactly one node, and gives up the executions of a node that is gone', async () => {
    if (skip) return;
    const url = await database('claim');
    const [a, b] = [await node(url, 'a'), await node(url, 'b')];
    const ids = Array.from({ length: 10 }, (_, i) => `e${i}`);
    await a.update((s) => {
      for (const id of ids) s.executions[id] = { _id: id, datastore: 'd', status: 'WAITING' } as never;
    });
    await expect.poll(() => Object.keys(b.state.executions).length, { timeout: 1000, interval: 20 }).toBe(10);
    for (const id of ids.slice(0, 9)) {
      const [byA, byB] = await Promise.all([a.claim(id), b.claim(id)]);
      expect(Number(byA) + Number(byB)).toBe(1);
      // the loser, asking again, still does not get it
      expect(await (byA ? b : a).claim(id)).toBe(false);
    }
    await expect(b.claim('e9')).resolves.toBe(true);
    await b.update((s) => {
      s.executions.e9.status = 'PROGRESS';
    });
    // b runs e9: not abandoned while its heartbeat lives, but to b itself after a restart
    expect(await a.abandoned(false)).toEqual([]);
    expect(await b.abandoned(true)).toEqual(['e9']);
    await b.close();
    expect(await a.abandoned(false)).toEqual(['e9']);
    // not yet started by a node that is gone: another takes the claim over
    await a.update((s) => {
      s.executions.e10 = { _id: 'e10', datastore: 'd', status: 'WAITING' } as never;
    });
    await sql(url, "UPDATE tuile_executions SET node = 'gone' WHERE id = 'e10'");
    expect(await a.claim('e10')).toBe(true);
  });

  it("claims an upload's check for one node; a node's own after its restart, a dead node's, and a new run go again", async () => {
    if (skip) return;
    const url = await database('checks');
    const [a, b] = [await node(url, 'a'), await node(url, 'b')];
    const close = (store: PostgresStateStore, run: string) =>
      store.update((s) => {
        s.uploads.u = { _id: 'u', datastore: 'd', status: 'CHECKING', checks: [...(s.uploads.u?.checks ?? []), { _id: run, status: 'PROGRESS' }] } as never;
      });
    await close(a, 'run1');
    await expect.poll(() => b.state.uploads.u?.status, { timeout: 1000, interval: 20 }).toBe('CHECKING');
    const [byA, byB] = await Promise.all([a.claimCheck('u'), b.claimCheck('u')]);
    expect(Number(byA) + Number(byB)).toBe(1);
    const [owner, other] = byA ? [a, b] : [b, a];
    expect(await other.claimCheck('u')).toBe(false);
    // the owner restarted (same node name): its check died with it, it takes it again
    expect(await owner.claimCheck('u')).toBe(true);
    // reopened and closed again: a new run, for whichever node asks first
    await close(owner, 'run2');
    expect(await other.claimCheck('u')).toBe(true);
    expect(await owner.claimCheck('u')).toBe(false);
    // the node checking it stops: its check goes to another
    await other.close();
    expect(await owner.claimCheck('u')).toBe(true);
    // not CHECKING any more: nobody's
    await owner.update((s) => {
      s.uploads.u.status = 'CLOSED';
    });
    expect(await owner.claimCheck('u')).toBe(false);
  });
});
