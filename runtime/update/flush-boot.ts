/**
 * Makes `/boot` durable for the bootloader after a deploy or a boot-counter write.
 *
 * Why (ostreedev/ostree issue 3392, fixed upstream in PR 3393; Debian 12 ships 2022.7): ostree
 * only fsyncs /boot after swapping the `loader` symlink. On a journaled ext4 that commits the swap
 * to the journal, not to its home location, and GRUB reads /boot without replaying the journal;
 * meanwhile ostree deletes the old `/ostree/boot.N` links on the root filesystem, whose journal the
 * kernel does replay. A power cut in between left GRUB on the old entries with their links gone:
 * emergency mode on every boot (the booted-gateway series bricked twice so). A flush after the
 * `ostree admin` process exits can only narrow that window, never close it, because ostree
 * removes the old links before it returns.
 *
 * What closes it is the layout: /boot is ext4 without a journal (`mkfs.ext4 -O ^has_journal`,
 * test/system/image/build-image.sh; image/ builds the same), so ostree's own fsync after the swap
 * writes the swap where GRUB reads it, before ostree touches the old links. This flush stays as the
 * belt to those braces: for grubenv writes (grub-editenv rewrites the file), and for a device
 * whose /boot still has a journal (a FIFREEZE/FITHAW cycle checkpoints it).
 *
 * Invariants: a successful freeze is always followed by thaw attempts (retried); the
 * root filesystem is never frozen (only a path that is itself a mount point, i.e. a separate
 * /boot); when freezing is impossible (not a mount point, not root, not permitted in a
 * container) the flush degrades to `sync -f` and says why in the log.
 */
import { readFile, realpath } from 'node:fs/promises';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { Exec } from '../platform/index.js';

/** What `flushBoot` did: frozen = a FIFREEZE/FITHAW cycle ran; otherwise `skipped` says why not. */
export interface FlushResult {
  frozen: boolean;
  skipped?: string;
}

/** Host facts `flushBoot` looks at, injectable for tests. */
export interface FlushHost {
  /** Path of mountinfo; default `/proc/self/mountinfo`. */
  mountinfoPath?: string;
  /** Effective uid; default `process.geteuid()`. */
  euid?: number;
}

const toolTimeoutMs = 60_000;
const thawAttempts = 3;

/** Mount points listed in a mountinfo file (field 5, octal escapes such as `\040` decoded). */
export function mountPoints(mountinfo: string): Set<string> {
  const points = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    points.add(field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8))));
  }
  return points;
}

/**
 * Flushes the filesystem holding `path` (`sync -f`) and, when `path` is a separate mount point
 * and we are root, runs a freeze/thaw cycle on it. Fails only if sync fails or a thaw does.
 */
export async function flushBoot(exec: Exec, log: Logger, path: string, host: FlushHost = {}): Promise<FlushResult> {
  try {
    await exec.run('sync', ['-f', path], { timeoutMs: toolTimeoutMs });
  } catch (err) {
    throw new OutpostError('OSTREE_FAILED', `flushing ${path} (sync -f) failed; the new boot entries may not survive a power cut`, { cause: err });
  }
  const skip = (skipped: string): FlushResult => {
    log.info('boot flush without freeze', { path, reason: skipped });
    return { frozen: false, skipped };
  };
  const euid = host.euid ?? process.geteuid?.() ?? -1;
  if (euid !== 0) return skip('not root: FIFREEZE needs CAP_SYS_ADMIN');
  let real: string;
  let mountinfo: string;
  try {
    real = await realpath(path);
    mountinfo = await readFile(host.mountinfoPath ?? '/proc/self/mountinfo', 'utf8');
  } catch (err) {
    return skip(`cannot tell whether ${path} is a mount point: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Freezing the filesystem this process runs from could wedge the device; only a separate /boot.
  if (real === '/' || !mountPoints(mountinfo).has(real)) return skip(`${real} is not a separate mount point`);
  try {
    await exec.run('fsfreeze', ['-f', real], { timeoutMs: toolTimeoutMs });
  } catch (err) {
    // Containers usually forbid FIFREEZE; some filesystems lack it. sync -f already ran.
    return skip(`fsfreeze -f failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= thawAttempts; attempt++) {
    try {
      await exec.run('fsfreeze', ['-u', real], { timeoutMs: toolTimeoutMs });
      log.info('boot flushed with freeze/thaw', { path: real });
      return { frozen: true };
    } catch (err) {
      lastError = err;
      log.error('fsfreeze -u failed, retrying', { path: real, attempt, err });
    }
  }
  throw new OutpostError('OSTREE_FAILED', `${real} is frozen and fsfreeze -u failed ${thawAttempts} times; run \`fsfreeze -u ${real}\``, {
    cause: lastError,
  });
}
