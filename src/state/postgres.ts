// The shared state store (issue 17): the state in PostgreSQL, one table per entity kind (id, datastore,
// the entity as JSONB), for any number of tuile nodes. Each node keeps the whole state in memory, read
// synchronously as with the JSON store. An update locks the version row (every update of every node is
// serialised through it), catches up with what other nodes committed since, runs the change on a copy and
// writes only the entities that changed, the new version and a NOTIFY in one transaction. Other nodes
// LISTEN, load the entities changed since their version and run their commit listeners (a sync through
// one node reaches every node's serving processes); a periodic version check covers a lost connection or
// a missed notification, and doubles as the node's heartbeat, by which a dead node's executions are found.

import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import pg from 'pg';
import { TuileError, errorMessage } from '../errors.js';
import { emptyState, type State } from './model.js';
import { runListeners, type CommitListener, type StateStore } from './store.js';

/** The entity kinds of the state, each a table `tuile_<kind>`. */
const KINDS = ['datastores', 'endpoints', 'uploads', 'executions', 'stored_data', 'configurations', 'offerings', 'permissions', 'keys'] as const;
type Kind = (typeof KINDS)[number];

const CHANNEL = 'tuile_state';
/** Key of the advisory lock under which migrations run: two nodes starting at once migrate one after the other. */
const MIGRATION_LOCK = 7_411_001;
/** How often a node writes its heartbeat and checks the version (the fallback to notifications). */
const TICK_MS = 1000;
/** A node whose heartbeat is older than this is taken for dead: its running executions are abandoned. */
export const NODE_TIMEOUT_S = 10;

/** Schema changes, applied in order once each (`schema_migrations`); append, never edit. */
const MIGRATIONS: string[] = [
  [
    'CREATE TABLE tuile_state (id int PRIMARY KEY CHECK (id = 1), version bigint NOT NULL, admin_user text NOT NULL)',
    ...KINDS.flatMap((k) => [
      // version: the state version that last wrote the row, which a node behind reads from
      `CREATE TABLE tuile_${k} (id text PRIMARY KEY, datastore text, body jsonb NOT NULL, version bigint NOT NULL)`,
      `CREATE INDEX tuile_${k}_version ON tuile_${k} (version)`,
    ]),
    // a row deleted leaves this trace, so that a node behind learns of the deletion
    'CREATE TABLE tuile_deleted (kind text NOT NULL, id text NOT NULL, version bigint NOT NULL, PRIMARY KEY (kind, id))',
    'CREATE INDEX tuile_deleted_version ON tuile_deleted (version)',
    // the node that claimed an execution: outside the entity, the Entrepôt's shape has no such field
    'ALTER TABLE tuile_executions ADD COLUMN node text',
    'CREATE TABLE tuile_nodes (id text PRIMARY KEY, heartbeat timestamptz NOT NULL, started timestamptz NOT NULL, pid int, host text)',
  ].join(';\n'),
  // the node checking an upload, and which check run it took (a close after a reopen is a new run)
  'ALTER TABLE tuile_uploads ADD COLUMN node text, ADD COLUMN check_run text',
];

export interface PostgresOptions {
  /** this node's name: the same across its restarts, so that it recovers its own executions at once */
  node: string;
  /** the state an empty database starts with (the data folder's JSON state, when it moves to PostgreSQL) */
  seed?: () => Promise<State | undefined>;
}

interface Loaded {
  state: State;
  texts: Map<string, string>;
  version: number;
}

/** U+0000 as JSON.stringify writes it: `\u0000` after an even number of backslashes (escaped ones) */
const NUL = /(?<!\\)(\\\\)*\\u0000/;

const key = (kind: Kind, id: string) => `${kind}\u0000${id}`;

export class PostgresStateStore implements StateStore {
  readonly shared = true;
  private current: State;
  /** JSON text of each entity of `current`: an update writes the entities whose text changed */
  private texts: Map<string, string>;
  private version: number;
  /** highest version heard of (notification or check) */
  private heard: number;
  private queue: Promise<unknown> = Promise.resolve();
  private refreshing = false;
  private readonly listeners: CommitListener[] = [];
  private listener: pg.Client | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private unreachable = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
    readonly node: string,
    loaded: Loaded,
    readonly isNew: boolean,
  ) {
    this.current = loaded.state;
    this.texts = loaded.texts;
    this.version = loaded.version;
    this.heard = loaded.version;
  }

  /** Connects, migrates the schema, loads the state, then listens for other nodes' commits. */
  static async open(url: string, opts: PostgresOptions): Promise<PostgresStateStore> {
    const pool = new pg.Pool(connection(url, 4));
    // an idle client losing its connection must not take the process down: the next query reconnects
    pool.on('error', (err) => console.error(`tuile: state database: ${errorMessage(err)}`));
    try {
      const isNew = await migrate(pool, opts.seed);
      const loaded = await withClient(pool, async (c) => {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        try {
          return await load(c);
        } finally {
          await c.query('COMMIT');
        }
      });
      const store = new PostgresStateStore(pool, url, opts.node, loaded, isNew);
      await store.heartbeat();
      await store.listen();
      store.timer = setInterval(() => void store.tick(), TICK_MS);
      store.timer.unref();
      return store;
    } catch (err) {
      await pool.end().catch(() => {});
      throw new TuileError('Internal', `state database ${redact(url)}: ${errorMessage(err)}`);
    }
  }

  get state(): Readonly<State> {
    return this.current;
  }

  onCommit(listener: CommitListener): void {
    this.listeners.push(listener);
  }

  update<T>(change: (draft: State) => T): Promise<T> {
    return this.serial(async () => {
      const c = await this.pool.connect().catch((err) => {
        throw new TuileError('Internal', `cannot save the state: ${errorMessage(err)}`);
      });
      let base: Loaded = { state: this.current, texts: this.texts, version: this.version };
      let result: T;
      let draft: State;
      // a client whose query failed may have lost its connection: the pool drops it rather than lend it again
      let broken: Error | undefined;
      try {
        try {
          await c.query('BEGIN');
          // the cluster-wide lock: held until this transaction ends, by one update of one node at a time
          const v = Number((await c.query('SELECT version FROM tuile_state WHERE id = 1 FOR UPDATE')).rows[0].version);
          if (v !== this.version) base = await changesSince(c, base, v);
        } catch (err) {
          broken = err as Error;
          await c.query('ROLLBACK').catch(() => {});
          throw new TuileError('Internal', `cannot save the state: ${errorMessage(err)}`);
        }
        draft = structuredClone(base.state);
        try {
          result = change(draft);
        } catch (err) {
          await c.query('ROLLBACK').catch(() => {});
          await this.adopt(base);
          throw err;
        }
        try {
          const texts = await write(c, base, draft);
          await c.query('COMMIT');
          base = { state: draft, texts, version: texts === base.texts ? base.version : base.version + 1 };
        } catch (err) {
          if (!(err instanceof TuileError)) broken = err as Error;
          await c.query('ROLLBACK').catch(() => {});
          await this.adopt(base);
          throw err instanceof TuileError ? err : new TuileError('Internal', `cannot save the state: ${errorMessage(err)}`);
        }
      } finally {
        c.release(broken);
      }
      await this.adopt(base);
      return result;
    });
  }

  /** Runs the listeners with a newer state, then makes it the current one. */
  private async adopt(next: Loaded): Promise<void> {
    this.heard = Math.max(this.heard, next.version);
    if (next.state === this.current) return;
    this.texts = next.texts;
    this.version = next.version;
    const previous = this.current;
    await runListeners(this.listeners, next.state, previous);
    this.current = next.state;
  }

  private serial<T>(run: () => Promise<T>): Promise<T> {
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  /** Loads what other nodes committed since this node's version, after the updates queued before. */
  private refresh(): void {
    if (this.refreshing || this.closed) return;
    this.refreshing = true;
    void this.serial(async () => {
      this.refreshing = false;
      if (this.heard <= this.version || this.closed) return;
      const next = await withClient(this.pool, async (c) => {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        try {
          const v = Number((await c.query('SELECT version FROM tuile_state WHERE id = 1')).rows[0].version);
          return await changesSince(c, { state: this.current, texts: this.texts, version: this.version }, v);
        } finally {
          await c.query('COMMIT');
        }
      });
      await this.adopt(next);
    }).catch((err) => console.error(`tuile: cannot load the state's changes: ${errorMessage(err)}`));
  }

  private async listen(): Promise<void> {
    const c = new pg.Client(connection(this.url));
    const lost = (err?: Error) => {
      if (this.listener !== c) return;
      this.listener = null;
      c.end().catch(() => {});
      if (this.closed) return;
      console.error(`tuile: state notifications lost${err ? ` (${errorMessage(err)})` : ''}; listening again`);
      setTimeout(() => void this.listen().catch(() => {}), TICK_MS).unref();
    };
    c.on('error', lost);
    c.on('end', () => lost());
    c.on('notification', (n) => {
      const v = Number(n.payload);
      if (Number.isFinite(v) && v > this.heard) {
        this.heard = v;
        this.refresh();
      }
    });
    this.listener = c;
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      lost(err as Error);
      throw err;
    }
  }

  /** The heartbeat, and the version check that catches what a notification missed. */
  private async tick(): Promise<void> {
    if (this.closed) return;
    try {
      await this.heartbeat();
      const v = Number((await this.pool.query('SELECT version FROM tuile_state WHERE id = 1')).rows[0].version);
      if (v > this.heard) this.heard = v;
      if (this.heard > this.version) this.refresh();
      if (this.unreachable) console.error('tuile: state database reachable again');
      this.unreachable = false;
    } catch (err) {
      // once per outage, not every second
      if (!this.unreachable) console.error(`tuile: state database unreachable: ${errorMessage(err)}; this node's heartbeat stops meanwhile`);
      this.unreachable = true;
    }
  }

  private async heartbeat(): Promise<void> {
    await this.pool.query(
      `INSERT INTO tuile_nodes (id, heartbeat, started, pid, host) VALUES ($1, now(), now(), $2, $3)
       ON CONFLICT (id) DO UPDATE SET heartbeat = now(), pid = EXCLUDED.pid, host = EXCLUDED.host`,
      [this.node, process.pid, hostname()],
    );
  }

  async claim(execution: string): Promise<boolean> {
    return withClient(this.pool, async (c) => {
      await c.query('BEGIN');
      try {
        // a row another node is claiming right now is skipped, not waited for; a claim of a node whose
        // heartbeat stopped (it died between its claim and its start) is taken over
        const r = await c.query(
          `SELECT e.id FROM tuile_executions e
           WHERE e.id = $1 AND e.body->>'status' = 'WAITING'
             AND (e.node IS NULL OR e.node = $2
                  OR NOT EXISTS (SELECT 1 FROM tuile_nodes n WHERE n.id = e.node AND n.heartbeat > now() - make_interval(secs => $3)))
           FOR UPDATE OF e SKIP LOCKED`,
          [execution, this.node, NODE_TIMEOUT_S],
        );
        if (r.rowCount) await c.query('UPDATE tuile_executions SET node = $2 WHERE id = $1', [execution, this.node]);
        await c.query('COMMIT');
        return (r.rowCount ?? 0) > 0;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }

  async claimCheck(upload: string): Promise<boolean> {
    return withClient(this.pool, async (c) => {
      await c.query('BEGIN');
      try {
        // as `claim`: the latest check run of a CHECKING upload, unless a live node other than this one
        // took that run (this node's own claim is from its previous run: the check died with it)
        const r = await c.query(
          `SELECT u.body->'checks'->-1->>'_id' AS run FROM tuile_uploads u
           WHERE u.id = $1 AND u.body->>'status' = 'CHECKING'
             AND (u.node IS NULL OR u.node = $2 OR u.check_run IS DISTINCT FROM u.body->'checks'->-1->>'_id'
                  OR NOT EXISTS (SELECT 1 FROM tuile_nodes n WHERE n.id = u.node AND n.heartbeat > now() - make_interval(secs => $3)))
           FOR UPDATE OF u SKIP LOCKED`,
          [upload, this.node, NODE_TIMEOUT_S],
        );
        if (r.rowCount) await c.query('UPDATE tuile_uploads SET node = $2, check_run = $3 WHERE id = $1', [upload, this.node, r.rows[0].run]);
        await c.query('COMMIT');
        return (r.rowCount ?? 0) > 0;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }

  async abandoned(mine: boolean): Promise<string[]> {
    const r = await this.pool.query(
      `SELECT e.id FROM tuile_executions e LEFT JOIN tuile_nodes n ON n.id = e.node
       WHERE e.body->>'status' = 'PROGRESS'
         AND (e.node IS NULL OR (e.node = $1 AND $2)
              OR (e.node <> $1 AND (n.id IS NULL OR n.heartbeat <= now() - make_interval(secs => $3))))`,
      [this.node, mine, NODE_TIMEOUT_S],
    );
    return r.rows.map((row: { id: string }) => row.id);
  }

  /** Stops listening and checking, after the updates queued; the node's heartbeat row goes. */
  async close(): Promise<void> {
    await this.queue;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const l = this.listener;
    this.listener = null;
    await l?.end().catch(() => {});
    await this.pool.query('DELETE FROM tuile_nodes WHERE id = $1', [this.node]).catch(() => {});
    await this.pool.end().catch(() => {});
  }
}

/**
 * A node that dies in a transaction holds the version row until PostgreSQL ends its session: a machine that
 * vanishes leaves no socket closed behind it, so keepalives find it and an idle transaction is cut.
 */
function connection(url: string, max?: number): pg.PoolConfig {
  return { connectionString: url, max, keepAlive: true, idle_in_transaction_session_timeout: NODE_TIMEOUT_S * 1000 };
}

async function withClient<T>(pool: pg.Pool, run: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    return await run(c);
  } finally {
    c.release();
  }
}

/**
 * Applies the migrations not applied yet. The call that makes the state row (an empty database) writes
 * the `seed` state with it, in the same transaction; it returns true if it made the row and had no seed.
 */
async function migrate(pool: pg.Pool, seed?: () => Promise<State | undefined>): Promise<boolean> {
  return withClient(pool, async (c) => {
    await c.query('BEGIN');
    try {
      await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())');
      const done = new Set((await c.query('SELECT version FROM schema_migrations')).rows.map((r: { version: number }) => r.version));
      for (const [i, sql] of MIGRATIONS.entries()) {
        if (done.has(i + 1)) continue;
        await c.query(sql);
        await c.query('INSERT INTO schema_migrations (version) VALUES ($1)', [i + 1]);
      }
      const made = await c.query('INSERT INTO tuile_state (id, version, admin_user) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING', [randomUUID()]);
      const initial = made.rowCount === 1 ? await seed?.() : undefined;
      if (initial) await write(c, { state: emptyState(''), texts: new Map(), version: 0 }, initial);
      await c.query('COMMIT');
      return made.rowCount === 1 && !initial;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => {});
      throw err;
    }
  });
}

/** The whole state, in the caller's transaction. */
async function load(c: pg.ClientBase): Promise<Loaded> {
  const row = (await c.query('SELECT version, admin_user FROM tuile_state WHERE id = 1')).rows[0];
  const state = emptyState(row.admin_user);
  const texts = new Map<string, string>();
  for (const kind of KINDS) {
    const table = state[kind] as Record<string, unknown>;
    for (const r of (await c.query(`SELECT id, body FROM tuile_${kind}`)).rows) {
      table[r.id] = r.body;
      texts.set(key(kind, r.id), JSON.stringify(r.body));
    }
  }
  return { state, texts, version: Number(row.version) };
}

/** `base` brought to version `to`: the rows written and deleted since its version, in the caller's transaction. */
async function changesSince(c: pg.ClientBase, base: Loaded, to: number): Promise<Loaded> {
  if (to === base.version) return base;
  const state: State = { ...base.state };
  const texts = new Map(base.texts);
  const touched = new Set<Kind>();
  const table = (kind: Kind) => {
    if (!touched.has(kind)) {
      touched.add(kind);
      (state as unknown as Record<Kind, unknown>)[kind] = { ...base.state[kind] };
    }
    return state[kind] as Record<string, unknown>;
  };
  for (const r of (await c.query('SELECT kind, id FROM tuile_deleted WHERE version > $1', [base.version])).rows) {
    if (!KINDS.includes(r.kind)) continue;
    delete table(r.kind)[r.id];
    texts.delete(key(r.kind, r.id));
  }
  for (const kind of KINDS) {
    for (const r of (await c.query(`SELECT id, body FROM tuile_${kind} WHERE version > $1`, [base.version])).rows) {
      table(kind)[r.id] = r.body;
      texts.set(key(kind, r.id), JSON.stringify(r.body));
    }
  }
  const admin = (await c.query('SELECT admin_user FROM tuile_state WHERE id = 1')).rows[0].admin_user;
  if (admin !== state.admin_user) state.admin_user = admin;
  return { state, texts, version: to };
}

/**
 * Writes the entities of `draft` whose JSON differs from `base`, the deletions, the new version and its
 * notification (sent at commit), in the caller's transaction. Returns the texts of `draft`, or `base.texts`
 * itself when nothing changed (nothing written, no new version).
 */
async function write(c: pg.ClientBase, base: Loaded, draft: State): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  const version = base.version + 1;
  const batches: { kind: Kind; ids: string[]; datastores: (string | null)[]; bodies: string[]; gone: string[] }[] = [];
  for (const kind of KINDS) {
    const b = { kind, ids: [] as string[], datastores: [] as (string | null)[], bodies: [] as string[], gone: [] as string[] };
    for (const [id, entity] of Object.entries(draft[kind])) {
      const text = JSON.stringify(entity);
      texts.set(key(kind, id), text);
      if (base.texts.get(key(kind, id)) === text) continue;
      // JSONB refuses U+0000 in strings: a clear refusal rather than a failed commit
      if (NUL.test(text)) throw new TuileError('InvalidParameter', `a text of ${kind} ${id} holds a NUL character (U+0000), which the state database cannot store`);
      b.ids.push(id);
      const ds = (entity as { datastore?: unknown }).datastore;
      b.datastores.push(typeof ds === 'string' ? ds : null);
      b.bodies.push(text);
    }
    for (const id of Object.keys(base.state[kind])) if (!(id in draft[kind])) b.gone.push(id);
    if (b.ids.length || b.gone.length) batches.push(b);
  }
  if (batches.length === 0 && draft.admin_user === base.state.admin_user) return base.texts;
  for (const b of batches) {
    if (b.ids.length) {
      await c.query(
        `INSERT INTO tuile_${b.kind} (id, datastore, body, version)
         SELECT i, d, t::jsonb, $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS u(i, d, t)
         ON CONFLICT (id) DO UPDATE SET datastore = EXCLUDED.datastore, body = EXCLUDED.body, version = EXCLUDED.version`,
        [b.ids, b.datastores, b.bodies, version],
      );
      await c.query('DELETE FROM tuile_deleted WHERE kind = $1 AND id = ANY($2::text[])', [b.kind, b.ids]);
    }
    if (b.gone.length) {
      await c.query(`DELETE FROM tuile_${b.kind} WHERE id = ANY($1::text[])`, [b.gone]);
      await c.query(
        `INSERT INTO tuile_deleted (kind, id, version) SELECT $1, unnest($2::text[]), $3
         ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version`,
        [b.kind, b.gone, version],
      );
    }
  }
  await c.query('UPDATE tuile_state SET version = $1, admin_user = $2 WHERE id = 1', [version, draft.admin_user]);
  await c.query('SELECT pg_notify($1, $2)', [CHANNEL, String(version)]);
  return texts;
}

/** A connection URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]+):[^@]*@/, '$1:***@');
}
