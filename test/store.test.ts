// The state store: serial updates, atomic snapshots. A write interrupted at any step leaves the previous
// or the new state on disk, never a broken file, whether it fails (injected) or the process is killed.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StateStore, type WriteStep } from '../src/state/store.js';
import { ROOT, tempDir } from './helpers/fixtures.js';

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

describe('StateStore', () => {
  it('starts empty, persists each update, and reopens what it wrote', async () => {
    const file = join(dir.path, 'a.json');
    const store = await StateStore.open(file);
    expect(counter(store.state)).toBe(0);
    await bump(store);
    await bump(store);
    const again = await StateStore.open(file);
    expect(counter(again.state)).toBe(2);
    expect(again.state.admin_user).toBe(store.state.admin_user);
  });

  it('runs updates one after the other, and a failing update changes nothing', async () => {
    const store = await StateStore.open(join(dir.path, 'b.json'));
    await Promise.all(Array.from({ length: 20 }, () => bump(store)));
    expect(counter(store.state)).toBe(20);
    await expect(
      store.update((s) => {
        s.datastores.x = {} as never;
        throw new Error('refused');
      }),
    ).rejects.toThrow('refused');
    expect(store.state.datastores.x).toBeUndefined();
    expect(counter((await StateStore.open(join(dir.path, 'b.json'))).state)).toBe(20);
  });

  it('shows a commit to readers only after its listeners ran', async () => {
    const store = await StateStore.open(join(dir.path, 'c.json'));
    const seen: number[] = [];
    store.onCommit(async (next) => {
      seen.push(counter(store.state), counter(next));
    });
    await bump(store);
    expect(seen).toEqual([0, 1]);
    expect(counter(store.state)).toBe(1);
  });

  for (const step of ['open', 'write', 'fsync', 'previous', 'rename', 'dirsync'] as WriteStep[]) {
    it(`a write failing at '${step}' leaves the previous or the new state, and no temporary file`, async () => {
      const file = join(dir.path, `fail-${step}.json`);
      let failAt: WriteStep | null = null;
      const store = await StateStore.open(file, {
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
      const store = await StateStore.open(file);
      await bump(store);
      await bump(store);
      expect(counter(JSON.parse(readFileSync(`${file}.1`, 'utf8')))).toBe(1);
      writeFileSync(file, bad);
      const again = await StateStore.open(file);
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
    await expect(StateStore.open(file)).rejects.toThrow(/no readable previous generation/);
  });

  it('a process killed while writing, again and again, always leaves a whole snapshot', async () => {
    const file = join(dir.path, 'killed.json');
    const script = join(dir.path, 'writer.mjs');
    writeFileSync(
      script,
      `import { StateStore } from ${JSON.stringify(join(ROOT, 'dist/state/store.js'))};
       const store = await StateStore.open(${JSON.stringify(file)});
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
      const store = await StateStore.open(file);
      const n = counter(store.state);
      expect(n).toBeGreaterThanOrEqual(last);
      last = n;
    }
    expect(last).toBeGreaterThan(0);
    // the temporary files of the killed writers were cleaned at the last open
    expect(readdirSync(dir.path).filter((n) => n.startsWith('.killed.json.'))).toEqual([]);
  });
});
