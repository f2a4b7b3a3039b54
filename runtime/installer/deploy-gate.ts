/**
 * The installer's own check before a deploy: the commit must be a release for this device in the
 * signed metadata. The agent's exported copy (update/trusted-export.ts) is walked again, offline,
 * from the image's root with the client the agent uses, against the installer's own store: its
 * version floor and not-earlier-than time do not depend on anything the agent can write.
 */
import { readFile } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';
import type { Logger } from '../logs/index.js';
import { OutpostError } from '../errors.js';
import { Store } from '../store/index.js';
import { releaseTargetsFor, TufClient, type Fetcher, type ReleaseArch } from '../update/tuf/index.js';

/** What the gate needs to know. */
export interface DeployGateOptions {
  /** The agent's export (trustedExportDir of its state dir). */
  exportDir: string;
  /** The image's initial root (update.rootFile). */
  rootFile: string;
  /** The installer's own store. */
  storeDir: string;
  hardware: string;
  arch: ReleaseArch;
  now: () => Date;
  log: Logger;
}

/**
 * The export holds each role once under its plain name; a repository with consistent snapshots
 * names snapshot and targets by version, which the export's single copy answers.
 */
function exportFetcher(dir: string): Fetcher {
  return {
    fetch: async (path, maxBytes) => {
      const name = path.replace(/^\d+\.(snapshot|targets)\.json$/, '$1.json');
      const full = normalize(join(dir, name));
      if (!full.startsWith(normalize(dir) + sep)) throw new OutpostError('INSTALLER_REFUSED', `metadata path ${path} leaves ${dir}`);
      const bytes = await readFile(full).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      return bytes === undefined ? undefined : new Uint8Array(bytes.subarray(0, maxBytes + 1));
    },
  };
}

/** Refuses (INSTALLER_REFUSED) unless the signed metadata names `commit` as a release for this device. */
export async function requireSignedCommit(options: DeployGateOptions, commit: string): Promise<void> {
  const store = await Store.open({ location: options.storeDir, version: 1 });
  try {
    const tuf = new TufClient({ store, fetcher: exportFetcher(options.exportDir), initialRoot: await readFile(options.rootFile), now: options.now, log: options.log });
    let targets;
    try {
      targets = await tuf.refresh();
    } catch (err) {
      throw new OutpostError('INSTALLER_REFUSED', `will not deploy ${commit}: the signed metadata in ${options.exportDir} does not verify: ${(err as Error).message}`, { cause: err });
    }
    const release = releaseTargetsFor(targets.list(), options.hardware, options.arch).releases.find((r) => r.custom.commit === commit);
    if (!release) throw new OutpostError('INSTALLER_REFUSED', `will not deploy ${commit}: no release for ${options.hardware}/${options.arch} in the signed metadata (targets v${targets.versions.targets}) names it`);
    options.log.info('deploy checked against the signed metadata', { commit, version: release.custom.version, targets: targets.versions.targets });
  } finally {
    await store.close();
  }
}
