/**
 * The Linux hardware watchdog device (/dev/watchdog, Documentation/watchdog/watchdog-api.rst).
 *
 * Invariants: opening arms the timer, so every failure after open closes with the magic 'V' to
 * disarm again (a half-configured watchdog must not reboot the gateway). A closed handle never
 * touches its old fd number again, since the kernel may have handed it to another file.
 * `close({ disarm: false })` and a crash both leave the timer running: the board resets unless a
 * new process opens the device and feeds it in time. Drivers built with nowayout ignore the
 * magic close and can never be disarmed.
 */
import { constants } from 'node:os';
import { OutpostError } from '../errors.js';
import { errnoError, errnoName } from './errno.js';
import type { NativeLoad, OutpostNative } from './native.js';

/** An open, armed hardware watchdog. */
export interface HardwareWatchdog {
  readonly path: string;
  /** The timeout the driver actually applied (it may round the requested one). */
  readonly timeoutSec: number;
  /** Restarts the countdown; throws OutpostError('WATCHDOG_UNAVAILABLE') if the device refuses. */
  keepalive(): void;
  /** Closes the device; `disarm` stops the timer (magic close), otherwise the reset stays due. */
  close(options: { disarm: boolean }): void;
}

function unavailable(path: string, what: string, errno: number, syscall: string): OutpostError {
  return new OutpostError('WATCHDOG_UNAVAILABLE', `hardware watchdog ${path}: ${what} failed: ${errnoName(errno)}`, {
    cause: errnoError(errno, syscall, path),
  });
}

/** Opens and arms `path` with `timeoutSec`; throws OutpostError('WATCHDOG_UNAVAILABLE') naming path and errno. */
export function openHardwareWatchdog(path: string, timeoutSec: number, native: NativeLoad): HardwareWatchdog {
  if (native.addon === undefined) {
    throw new OutpostError('WATCHDOG_UNAVAILABLE', `hardware watchdog ${path}: native addon unavailable (${native.reason})`);
  }
  if (!Number.isInteger(timeoutSec) || timeoutSec < 1 || timeoutSec > 0x7fffffff) {
    throw new OutpostError('WATCHDOG_UNAVAILABLE', `hardware watchdog ${path}: timeoutSec must be a positive integer, got ${timeoutSec}`);
  }
  const addon: OutpostNative = native.addon;
  const fd = addon.wdOpen(path);
  if (fd < 0) throw unavailable(path, 'open', fd, 'open');

  let applied = addon.wdSetTimeout(fd, timeoutSec);
  // Drivers without WDIOF_SETTIMEOUT still work, at their fixed timeout: use that one.
  if (applied === -constants.errno.EOPNOTSUPP) applied = addon.wdGetTimeout(fd);
  if (applied <= 0) {
    addon.wdClose(fd, true);
    throw unavailable(path, `setting the timeout to ${timeoutSec} s`, applied < 0 ? applied : -constants.errno.EINVAL, 'ioctl');
  }

  let open = true;
  return {
    path,
    timeoutSec: applied,
    keepalive() {
      if (!open) throw new OutpostError('WATCHDOG_UNAVAILABLE', `hardware watchdog ${path}: keepalive after close`, { transient: false });
      const r = addon.wdKeepalive(fd);
      if (r < 0) throw unavailable(path, 'keepalive', r, 'ioctl');
    },
    close({ disarm }) {
      if (!open) return;
      open = false;
      const r = addon.wdClose(fd, disarm);
      if (r < 0) throw unavailable(path, disarm ? 'magic close' : 'close', r, disarm ? 'write' : 'close');
    },
  };
}
