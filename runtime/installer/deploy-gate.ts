/**
 * The installer's own check before a deploy: the commit must be a release for this device in the
 * signed metadata. The agent's exported copy (update/trusted-export.ts) is walked again, offline,
 * from the image's root with the client the agent uses, against the installer's own store: its
 * version floor and not-earlier-than time do not depend on anything the agent can write. Nor does
 * the release floor: nothing older than the running release, which ostree says is booted.
 */
import { constants } from 'node:fs';
import { open, readFile, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { Logger } from '../logs/index.js';
import { isOutpostError, OutpostError } from '../errors.js';
import { setAsideStore, Store } from '../store/index.js';
import { releaseTargetsFor, TufClient, type Fetcher, type ReleaseArch, type TrustedTargets } from '../update/tuf/index.js';

/** Where the installer reads the signed metadata from, and its own store for walking it. */
export interface ExportWalkOptions {
  /** The agent's export (trustedExportDir of its state dir). */
  exportDir: string;
  /** The agent's state dir, which the export must not lead out of. */
  agentStateDir: string;
  /** The image's initial root (update.rootFile). */
  rootFile: string;
  /** The installer's own store. */
  storeDir: string;
  now: () => Date;
  log: Logger;
}

/** What the gate needs to know. */
export interface DeployGateOptions extends ExportWalkOptions {
  hardware: string;
  arch: ReleaseArch;
  /** The running system's commit, as ostree reports it; its release is the floor. */
  bootedCommit: () => Promise<string | null>;
}

/**
 * The export holds each role once under its plain name; a repository with consistent snapshots
 * names snapshot and targets by version, which the export's single copy answers. The agent owns
 * the directory: a file must be a regular file reached without a link, and is read only up to the
 * limit, so nothing else the installer may read (or a FIFO, or /dev/zero) ends up parsed.
 */
function exportFetcher(dir: string): Fetcher {
  return {
    fetch: async (path, maxBytes) => {
      const name = path.replace(/^\d+\.(snapshot|targets)\.json$/, '$1.json');
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) throw new OutpostError('INSTALLER_REFUSED', `metadata name ${path} is not a plain file name`);
      let handle;
      try {
        handle = await open(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new OutpostError('INSTALLER_REFUSED', `${name} in ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'} (a link, or not readable)`);
      }
      try {
        if (!(await handle.stat()).isFile()) throw new OutpostError('INSTALLER_REFUSED', `${name} in ${dir} is not a regular file`);
        const buffer = Buffer.alloc(maxBytes + 1);
        const { bytesRead } = await handle.read(buffer, 0, maxBytes + 1, 0);
        return new Uint8Array(buffer.subarray(0, bytesRead));
      } finally {
        await handle.close();
      }
    },
  };
}

/** The gate store's contents can always be rebuilt from the image's root: these never refuse for good. */
const rebuildable = ['STORE_CORRUPT', 'STORE_TOO_NEW'] as const;

/**
 * Walks the export with the installer's store. A store that LevelDB's repair cannot make readable
 * (or one a newer release wrote, after a rollback) is set aside once and the walk starts again from
 * the image's root, as on the first deploy: else every deploy would be refused from then on. Unlike
 * the agent's, this store is root's alone: the agent cannot make it unreadable to force that walk.
 */
async function verifiedTargets(options: ExportWalkOptions, exportDir: string, refusal: string, freshness: Freshness): Promise<TrustedTargets> {
  try {
    return await walkExport(options, exportDir, freshness).catch((err: unknown) => {
      if (!isOutpostError(err, ...rebuildable)) throw err;
      const kept = setAsideStore(options.storeDir);
      options.log.warn('the installer\'s metadata store is unreadable; starting it again from the image\'s root', { store: options.storeDir, copy: kept, err });
      return walkExport(options, exportDir, freshness);
    });
  } catch (err) {
    // The details stay in the installer's log: a parse error quotes what it read, and the
    // agent must not learn the contents of files it could not read itself.
    const code = isOutpostError(err) ? err.code : 'INTERNAL';
    options.log.warn('the exported metadata does not verify', { refusal, err });
    // Only the installer's own store failing is worth a retry; the export stays as it is until the agent's next check.
    const transient = code === 'STORE_IO' || code === 'STORE_LOCKED';
    throw new OutpostError('INSTALLER_REFUSED', `${refusal}: the signed metadata in ${options.exportDir} does not verify (${code}; the installer's log has the details)`, { transient });
  }
}

/**
 * `fresh` for what installs (a deploy): expired metadata refuses. `stored-if-expired` for who may
 * send commands: when the export has expired (the repository unreachable for longer than the
 * timestamp's lifetime), the targets this store verified last, as long as they have not expired
 * themselves. The agent judges commands by its own store (TufClient.stored) with no such bound, so
 * past the targets' lifetime a grant passes the agent and is refused here. Else a gateway cut off
 * from its repository could not be reached by SSH either, which is when it is needed most.
 */
export type Freshness = 'fresh' | 'stored-if-expired';

async function walkExport(options: ExportWalkOptions, exportDir: string, freshness: Freshness): Promise<TrustedTargets> {
  // Repaired like the agent's store: a power cut while LevelDB wrote it must not refuse every
  // deploy from then on (found by the power-cut series). A copy of the damaged one is kept.
  const store = await Store.open({
    location: options.storeDir,
    version: 1,
    repair: true,
    onEvent: (event) => {
      if (event.kind === 'repaired') options.log.warn('the installer\'s metadata store was corrupt and has been repaired', { store: options.storeDir, copy: event.backup });
    },
  });
  try {
    const client = new TufClient({ store, fetcher: exportFetcher(exportDir), initialRoot: await readFile(options.rootFile), now: options.now, log: options.log });
    try {
      return await client.refresh();
    } catch (err) {
      if (freshness === 'fresh' || !isOutpostError(err, 'UPDATE_EXPIRED')) throw err;
      const stored = await client.stored();
      // The targets' own lifetime is how long the fleet vouches for its issuer list: past it,
      // an agent withholding newer metadata (a revoked issuer in it) gains nothing more.
      if (!stored || stored.expires.getTime() <= Math.max(options.now().getTime(), stored.referenceTime.getTime())) throw err;
      options.log.warn('the exported metadata has expired; judging command issuers by the targets this installer verified last', { targets: stored.versions.targets, err });
      return stored;
    }
  } finally {
    await store.close();
  }
}

/**
 * The targets metadata the agent's export verifies to, walked by the installer itself; refuses
 * (INSTALLER_REFUSED, starting with `refusal`) when it does not verify.
 */
export async function exportedTargets(options: ExportWalkOptions, refusal: string, freshness: Freshness = 'fresh'): Promise<TrustedTargets> {
  const exportDir = await realpath(options.exportDir).catch(() => options.exportDir);
  if (!exportDir.startsWith((await realpath(options.agentStateDir)) + sep)) throw new OutpostError('INSTALLER_REFUSED', `${refusal}: ${options.exportDir} leads out of the agent's state dir`);
  return verifiedTargets(options, exportDir, refusal, freshness);
}

/** Refuses (INSTALLER_REFUSED) unless the signed metadata names `commit` as a release for this device. */
export async function requireSignedCommit(options: DeployGateOptions, commit: string): Promise<void> {
  const targets = await exportedTargets(options, `will not deploy ${commit}`);
  const { releases } = releaseTargetsFor(targets.list(), options.hardware, options.arch);
  const release = releases.find((r) => r.custom.commit === commit);
  if (!release) throw new OutpostError('INSTALLER_REFUSED', `will not deploy ${commit}: no release for ${options.hardware}/${options.arch} in the signed metadata (targets v${targets.versions.targets}) names it`);
  // An old release stays signed in the metadata; deploying it would bring back what a newer one
  // fixed. Going back is the rollback's job (to the deployment kept for it), never a deploy.
  const booted = await options.bootedCommit();
  const running = booted === null ? undefined : releases.find((r) => r.custom.commit === booted);
  if (running && release.custom.version < running.custom.version) throw new OutpostError('INSTALLER_REFUSED', `will not deploy ${commit}: release ${release.custom.version} is older than release ${running.custom.version}, which this device runs`);
  options.log.info('deploy checked against the signed metadata', { commit, version: release.custom.version, targets: targets.versions.targets });
}
