/**
 * Which OSTree commit is running, found the way ostree finds its booted deployment: the device
 * and inode of `/` (ostree-prepare-root bind-mounts the deployment there) against each deployment
 * directory `/ostree/deploy/<os>/deploy/<commit>.<serial>`. No ostree process is needed, so
 * `outpost status` stays cheap.
 *
 * Not by resolving the kernel's `ostree=/ostree/boot.N/...` link: ostree rewrites those links on
 * every boot-config swap, so after two swaps within one boot (a rollback's undeploy, then the next
 * update's deploy) the link names the NEW deployment. The power-cut series caught outpost that way
 * "committing" a release it never booted, which then booted untrialled and panicked for ever.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Where to look; all default to the running system and are overridden by tests. */
export interface BootedCommitSource {
  cmdlinePath?: string;
  /** Holds `ostree/deploy`; default `/`. */
  sysroot?: string;
  /** The running root; default `/`. */
  root?: string;
}

const deploymentDir = /^([0-9a-f]{64})\.\d+$/;

/** The booted commit checksum, or null when this is not an OSTree boot. */
export async function readBootedCommit(source: BootedCommitSource = {}): Promise<string | null> {
  const cmdline = await readFile(source.cmdlinePath ?? '/proc/cmdline', 'utf8').catch(() => '');
  if (!cmdline.split(/\s+/).some((a) => a.startsWith('ostree='))) return null;
  const root = await stat(source.root ?? '/').catch(() => null);
  if (root === null) return null;
  const deployRoot = join(source.sysroot ?? '/', 'ostree', 'deploy');
  for (const os of await readdir(deployRoot).catch(() => [])) {
    const dir = join(deployRoot, os, 'deploy');
    for (const name of await readdir(dir).catch(() => [])) {
      const commit = deploymentDir.exec(name)?.[1];
      if (commit === undefined) continue;
      const candidate = await stat(join(dir, name)).catch(() => null);
      if (candidate !== null && candidate.dev === root.dev && candidate.ino === root.ino) return commit;
    }
  }
  return null;
}
