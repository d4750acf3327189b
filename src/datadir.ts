// The data folder as a whole, at start: one server at a time on it (an exclusive lock file naming the
// holder's pid), and nothing under it that the state does not account for (orphans of a kill: `.part`
// files of cut pushes, folders of uploads and pyramids whose deletion was committed but not carried out).

import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { dataPaths } from './config.js';
import { TuileError, errorMessage } from './errors.js';
import { readDescriptor } from './pyramid/storage.js';
import { pyramidFolder, type State } from './state/model.js';

const LOCK_FILE = 'tuile.lock';

/** Whether a pid runs, as a node process where that can be seen: a pid reused by another program is no holder. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists, under another user
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return /node|tuile/.test(readFileSync(`/proc/${pid}/cmdline`, 'latin1'));
  } catch {
    return true; // no /proc here: a live pid is taken for the holder
  }
}

/**
 * Takes the data folder's lock for this process, released when it exits. A lock whose pid no longer runs
 * (a kill -9) is taken over with a line saying so; a live holder makes it throw with its pid.
 */
export function lockDataDir(dataDir: string): void {
  const file = join(dataDir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      try {
        writeSync(fd, `${process.pid}\n`);
      } finally {
        closeSync(fd);
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err;
    }
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // released meanwhile
    }
    const pid = Number.parseInt(text, 10);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new TuileError('Conflict', `the data folder ${dataDir} is in use by another tuile (pid ${pid}, lock file ${file}); stop it first`);
    }
    console.warn(`tuile: taking over the lock of ${dataDir} from pid ${text.trim() || '?'}, which no longer runs tuile`);
    try {
      unlinkSync(file);
    } catch {
      // another starter took it over first: the next attempt finds its live pid
    }
  }
  process.once('exit', () => {
    try {
      if (Number.parseInt(readFileSync(file, 'utf8'), 10) === process.pid) unlinkSync(file);
    } catch {
      // gone already
    }
  });
}

/** Pyramid folders (names under pyramids/) the state's stored data read, through their chains. */
async function pyramidsInUse(state: Readonly<State>, pyramids: string): Promise<Set<string>> {
  const used = new Set<string>();
  for (const sd of Object.values(state.stored_data)) {
    const own = pyramidFolder(sd);
    used.add(own);
    try {
      const d = await readDescriptor(join(pyramids, own));
      for (const p of d.parents) {
        const rel = relative(pyramids, isAbsolute(p.path) ? p.path : resolve(pyramids, own, p.path));
        if (!rel.startsWith('..') && !rel.includes('/')) used.add(rel);
      }
    } catch {
      // no readable pyramid (never built, or failed): every generation named after it stays, to be safe
      used.add(`${sd._id}.*`);
    }
  }
  return used;
}

/**
 * Removes what the state does not reference under uploads/ and pyramids/, logging each removal. Runs at
 * start, after the recovery of interrupted executions and before anything can write there. With a state
 * `shared` by several nodes (and these folders with it), pushes and builds of the other nodes may be under
 * way: their temporary files and folders stay, for their node (or the one that fails its executions).
 */
export async function collectOrphans(state: Readonly<State>, dataDir: string, shared = false): Promise<string[]> {
  const paths = dataPaths(dataDir);
  const removed: string[] = [];
  const remove = async (path: string, why: string) => {
    try {
      await rm(path, { recursive: true, force: true });
      removed.push(path);
      console.log(`tuile: removed ${relative(dataDir, path)} (${why})`);
    } catch (err) {
      console.error(`tuile: cannot remove the orphan ${path}: ${errorMessage(err)}`);
    }
  };
  const list = async (dir: string) => {
    try {
      return await readdir(dir, { withFileTypes: true });
    } catch {
      return [];
    }
  };

  for (const e of await list(paths.uploads)) {
    const path = join(paths.uploads, e.name);
    if (!state.uploads[e.name]) {
      await remove(path, 'no upload of that id in the state');
      continue;
    }
    // pushes are not resumed: a temporary file of one is a push cut by a stop
    for (const f of await readdir(path, { recursive: true, withFileTypes: true }).catch(() => [])) {
      if (f.isFile() && f.name.endsWith('.part') && !shared) await remove(join(f.parentPath, f.name), 'a push interrupted by a stop');
    }
  }

  const used = await pyramidsInUse(state, paths.pyramids);
  // a build renames its folder into place before its end is committed
  const running = new Set(Object.values(state.executions).flatMap((e) => (e.status === 'PROGRESS' && e.folder ? [e.folder] : [])));
  for (const e of await list(paths.pyramids)) {
    const owner = e.name.split('.')[0];
    if (used.has(e.name) || (used.has(`${owner}.*`) && e.name.startsWith(`${owner}.`) && !e.name.includes('.tmp-'))) continue;
    if (shared && (e.name.includes('.tmp-') || running.has(e.name))) continue;
    await remove(join(paths.pyramids, e.name), e.name.includes('.tmp-') ? 'a build interrupted by a stop' : 'no stored data reads it');
  }
  return removed;
}
