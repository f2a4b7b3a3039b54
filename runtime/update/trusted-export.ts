/**
 * The agent's copy of the metadata TUF verified, laid out as a repository the installer reads
 * offline: before it deploys a commit, the installer walks the same chain again from the image's
 * root with the same client code (installer/deploy-gate.ts), so a compromised agent cannot deploy
 * what the fleet's keys did not sign. Every root version is kept (the chain needs each step);
 * the other roles are overwritten by each refresh.
 */
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../platform/index.js';
import type { Store } from '../store/index.js';
import type { Logger } from '../logs/index.js';
import { defaultMetadataMaxBytes, storedRole, type Fetcher } from './tuf/index.js';

/** Where the export lives below the agent's state dir. */
export const trustedExportDir = (stateDir: string): string => join(stateDir, 'trusted-metadata');

/** Writes one trusted root version (called as the client trusts it). */
export async function exportTrustedRoot(dir: string, version: number, bytes: Uint8Array): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(join(dir, `${version}.root.json`), bytes, { mode: 0o644 });
}

/**
 * Writes what the store trusts after a refresh: the newest root and the other top roles. Targets
 * first and timestamp last, so a reader between two writes meets a timestamp that names an older
 * snapshot at worst (refused as a mismatch, never accepted).
 */
export async function exportTrusted(store: Store, dir: string, rootVersion: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  // Most checks change nothing: an unchanged file is not written again (an fsync'd write per
  // role and check would wear the flash for years for nothing).
  const write = async (name: string, json: string | undefined) => {
    if (json === undefined || (await readFile(join(dir, name), 'utf8').catch(() => undefined)) === json) return;
    await writeFileAtomic(join(dir, name), json, { mode: 0o644 });
  };
  await write(`${rootVersion}.root.json`, await storedRole(store, 'root'));
  for (const role of ['targets', 'snapshot', 'timestamp'] as const) await write(`${role}.json`, await storedRole(store, role));
}

/**
 * Fetches the root versions missing from the export (2 up to `rootVersion`): those the store came
 * to trust before the export existed (a device upgraded from a release without it) cannot be
 * handed on as they are trusted. The installer verifies each link itself, so they are written as
 * fetched; one that cannot be fetched now is tried again at the next check.
 */
export async function fillRootChain(fetcher: Fetcher, dir: string, rootVersion: number, log: Logger): Promise<void> {
  for (let version = 2; version <= rootVersion; version++) {
    const name = `${version}.root.json`;
    if (await access(join(dir, name)).then(() => true, () => false)) continue;
    try {
      const bytes = await fetcher.fetch(name, defaultMetadataMaxBytes.root);
      if (bytes !== undefined && bytes.length <= defaultMetadataMaxBytes.root) await exportTrustedRoot(dir, version, bytes);
      else log.warn('a root version the installer needs is not in the repository', { name });
    } catch (err) {
      log.warn('could not fetch a root version the installer needs', { name, err });
    }
  }
}
