/**
 * The agent's copy of the metadata TUF verified, laid out as a repository the installer reads
 * offline: before it deploys a commit, the installer walks the same chain again from the image's
 * root with the same client code (installer/deploy-gate.ts), so a compromised agent cannot deploy
 * what the fleet's keys did not sign. Every root version is kept (the chain needs each step);
 * the other roles are overwritten by each refresh.
 */
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../platform/index.js';
import type { Store } from '../store/index.js';
import type { Logger } from '../logs/index.js';
import { defaultMetadataMaxBytes, TUF_COLLECTION, type Fetcher } from './tuf/index.js';

/** Where the export lives below the agent's state dir. */
export const trustedExportDir = (stateDir: string): string => join(stateDir, 'trusted-metadata');

const storedRole = z.union([z.object({ json: z.string() }), z.object({ time: z.string() })]);

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
  const roles = store.collection(TUF_COLLECTION, storedRole);
  const text = async (role: string): Promise<string | undefined> => {
    const record = await roles.get(role);
    return record && 'json' in record ? record.json : undefined;
  };
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const root = await text('root');
  if (root !== undefined) await exportTrustedRoot(dir, rootVersion, new TextEncoder().encode(root));
  for (const role of ['targets', 'snapshot', 'timestamp']) {
    const json = await text(role);
    if (json !== undefined) await writeFileAtomic(join(dir, `${role}.json`), json, { mode: 0o644 });
  }
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
