/** Shared set-up for the TUF tests: keys, a repository in a temp dir, a fake clock, a directory fetcher, a store. */
import type { Test } from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { silentLogger } from '../../../../runtime/logs/index.js';
import { Store } from '../../../../runtime/store/index.js';
import { generateKey, type PrivateKey } from '../../../../runtime/trust/index.js';
import { initRepository, serializeMetadata, signMetadata, TufClient, TUF_COLLECTION, type Fetcher, type Repository } from '../../../../runtime/update/tuf/index.js';

export const T0 = new Date('2030-01-01T00:00:00Z');
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

/** A settable clock. */
export class Clock {
  constructor(public time: Date = T0) {}
  readonly now = (): Date => this.time;
  set(ms: number): void {
    this.time = new Date(T0.getTime() + ms);
  }
}

/** One key per top-level role, plus a second root key. */
export function makeKeys() {
  return { root: generateKey(), root2: generateKey(), targets: generateKey(), snapshot: generateKey(), timestamp: generateKey() };
}
export type Keys = ReturnType<typeof makeKeys>;

export function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A repository served from a directory, with per-path overrides to play the attacker. */
export class DirFetcher implements Fetcher {
  readonly requests: string[] = [];
  readonly overrides = new Map<string, Uint8Array | Error>();
  constructor(public dir: string) {}
  async fetch(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    this.requests.push(path);
    const override = this.overrides.get(path);
    if (override instanceof Error) throw override;
    if (override) return override.slice(0, maxBytes + 1);
    try {
      return new Uint8Array(readFileSync(join(this.dir, path))).slice(0, maxBytes + 1);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}

/** Everything a client test needs: a repository, its keys, a device store and a client. */
export async function world(t: Test, options: { rootKeys?: (k: Keys) => PrivateKey[]; rootThreshold?: number } = {}) {
  const keys = makeKeys();
  const clock = new Clock();
  const repoDir = join(tempDir(t, 'outpost-tuf-repo-'), 'repo');
  const rootKeys = options.rootKeys?.(keys) ?? [keys.root];
  const repo = await initRepository(repoDir, { rootKeys, rootThreshold: options.rootThreshold ?? 1, targetsKey: keys.targets, snapshotKey: keys.snapshot, timestampKey: keys.timestamp, now: clock.now });
  const initialRoot = new Uint8Array(readFileSync(join(repoDir, '1.root.json')));
  const store = await Store.open({ location: join(tempDir(t, 'outpost-tuf-store-'), 'db'), version: 1 });
  t.teardown(() => store.close());
  const fetcher = new DirFetcher(repoDir);
  const client = new TufClient({ store, fetcher, initialRoot, now: clock.now, log: silentLogger });
  const publish = (r: Repository = repo, expiresMs?: { targets?: number; snapshot?: number; timestamp?: number }) =>
    r.publish({ targetsKey: keys.targets, snapshotKey: keys.snapshot, timestampKey: keys.timestamp, ...(expiresMs ? { expiresMs } : {}) });
  return { keys, clock, repoDir, repo, initialRoot, store, fetcher, client, publish };
}

/** The raw trusted records in the device store (what "trusted state unchanged" compares). */
export async function trustedState(store: Store): Promise<Record<string, unknown>> {
  return Object.fromEntries(await store.collection(TUF_COLLECTION, z.unknown()).entries());
}

/** Copies the repository's files, as an attacker capturing them for a replay would. */
export function capture(t: Test, dir: string): string {
  const copy = tempDir(t, 'outpost-tuf-captured-');
  cpSync(dir, copy, { recursive: true });
  return copy;
}

/** Reads a metadata file's signed part. */
export function readSigned(dir: string, name: string): Record<string, unknown> {
  return (JSON.parse(readFileSync(join(dir, name), 'utf8')) as { signed: Record<string, unknown> }).signed;
}

/** Signs `signed` with `keys` and writes it as `name` (the attacker holding some keys). */
export function forge(dir: string, name: string, signed: object, keys: PrivateKey[]): Uint8Array {
  const bytes = serializeMetadata(signMetadata(signed, keys));
  writeFileSync(join(dir, name), bytes);
  return bytes;
}

/** A release target and its delta, following the conventions in docs/architecture.md. */
export function releaseTarget(version: number, commit: string, deltaFrom?: string) {
  return {
    name: `releases/gw-1/aarch64/${version}`,
    file: {
      length: 0,
      hashes: { sha256: commit },
      custom: { ref: 'outpost/gw-1/aarch64', commit, arch: 'aarch64', hardware: 'gw-1', version, deltas: deltaFrom ? [{ from: deltaFrom, target: `deltas/${deltaFrom}-${commit}` }] : [] },
    },
  };
}
