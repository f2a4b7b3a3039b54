/**
 * The agent's copy of the metadata TUF verified, laid out as a repository the installer reads
 * offline: before it deploys a commit, the installer walks the same chain again from the image's
 * root with the same client code (installer/deploy-gate.ts), so a compromised agent cannot deploy
 * what the fleet's keys did not sign. Every root version is kept (the chain needs each step);
 * the other roles are overwritten by each refresh.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../platform/index.js';
import type { Store } from '../store/index.js';
import { TUF_COLLECTION } from './tuf/index.js';

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
