import type { StatsFs } from 'node:fs';
import { statfs } from 'node:fs/promises';
import type { CheckProbe } from '../probe.js';
import { abortable } from './abort.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { errnoCode, formatBytes, messageOf } from './files.js';
import { Findings, round2 } from './outcome.js';

/**
 * Free space of the file system holding `path`, as an unprivileged process sees it: blocks
 * reserved for root (ext4's 5%) do not count, since the services that fill disks do not run as root.
 */
export function diskProbe(check: CheckOf<'disk'>, _deps: ProbeDeps): CheckProbe {
  return {
    async run(signal) {
      let fs: StatsFs;
      try {
        fs = await abortable(signal, () => statfs(check.path));
      } catch (err) {
        if (signal.aborted) throw err;
        return { ok: false, detail: errnoCode(err) === 'ENOENT' ? `${check.path} does not exist` : `statfs ${check.path}: ${messageOf(err)}` };
      }
      const found = new Findings();
      const freeBytes = fs.bavail * fs.bsize;
      // As df(1) computes Use%: the root-reserved blocks are neither used nor available.
      const usable = fs.blocks - fs.bfree + fs.bavail;
      const freePercent = usable === 0 ? 0 : round2((fs.bavail / usable) * 100);
      found.measure({ freeBytes, freePercent, totalBytes: fs.blocks * fs.bsize, minFreeBytes: check.minFreeBytes, minFreePercent: check.minFreePercent });
      if (check.minFreeBytes !== undefined && freeBytes < check.minFreeBytes) found.fail(`${check.path} has ${formatBytes(freeBytes)} free, below the minimum ${formatBytes(check.minFreeBytes)}`);
      if (check.minFreePercent !== undefined && freePercent < check.minFreePercent) found.fail(`${check.path} has ${freePercent}% free, below the minimum ${check.minFreePercent}%`);
      if (check.minFreeInodes !== undefined) {
        // vfat and btrfs report no inode limit (0 files): there is nothing to run out of.
        if (fs.files === 0) found.note(`${check.path} has no inode limit`);
        else {
          found.measure({ freeInodes: fs.ffree, minFreeInodes: check.minFreeInodes });
          if (fs.ffree < check.minFreeInodes) found.fail(`${check.path} has ${fs.ffree} free inodes, below the minimum ${check.minFreeInodes}`);
        }
      }
      return found.outcome();
    },
  };
}
