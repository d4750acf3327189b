// Which state store a server runs on: PostgreSQL when a state URL is configured (nodes sharing one
// state), else the JSON file of the data folder (one process).

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { dataPaths } from '../config.js';
import { PostgresStateStore } from './postgres.js';
import { JsonStateStore, type StateStore } from './store.js';

export async function openStateStore(cfg: { dataDir: string; stateUrl?: string }): Promise<StateStore> {
  const file = dataPaths(cfg.dataDir).state;
  if (!cfg.stateUrl) return JsonStateStore.open(file);
  // a data folder moving to PostgreSQL brings its state into an empty database: started on an empty
  // state, the node would take its uploads and pyramids for orphans
  const seed = async () => {
    if (!existsSync(file) && !existsSync(`${file}.1`)) return undefined;
    const json = await JsonStateStore.open(file);
    console.log(`tuile: the state of ${file} is imported into the empty state database (the file is no longer used)`);
    return json.state;
  };
  return PostgresStateStore.open(cfg.stateUrl, { node: nodeName(cfg.dataDir), seed });
}

/**
 * The node's name among those sharing a state: kept in its data folder (which one process holds, by its
 * lock), so that a restarted node knows the executions it was running for its own.
 */
export function nodeName(dataDir: string): string {
  const file = join(dataDir, 'node-id');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const name = `${hostname()}-${randomBytes(4).toString('hex')}`;
  writeFileSync(file, `${name}\n`);
  return name;
}
