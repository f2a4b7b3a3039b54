/**
 * Which OSTree commit is running: the kernel command line's `ostree=` argument points at a
 * boot link that resolves to `/ostree/deploy/<os>/deploy/<commit>.<serial>`. Reading it this way
 * needs no ostree process, so `outpost status` stays cheap.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename, join } from 'node:path';

/** Where to look; both default to the running system and are overridden by tests. */
export interface BootedCommitSource {
  cmdlinePath?: string;
  sysroot?: string;
}

/** The booted commit checksum, or null when this is not an OSTree boot. */
export async function readBootedCommit(source: BootedCommitSource = {}): Promise<string | null> {
  let cmdline: string;
  try {
    cmdline = await readFile(source.cmdlinePath ?? '/proc/cmdline', 'utf8');
  } catch {
    return null;
  }
  const arg = cmdline.split(/\s+/).find((a) => a.startsWith('ostree='));
  if (!arg) return null;
  try {
    const deployment = basename(await realpath(join(source.sysroot ?? '/', arg.slice('ostree='.length))));
    const commit = deployment.split('.')[0] ?? '';
    return /^[0-9a-f]{64}$/.test(commit) ? commit : null;
  } catch {
    return null;
  }
}
