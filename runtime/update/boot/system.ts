/** What the real bootloader adapters share: the reset cause, a reboot through systemd (the boot id is platform's). */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Exec } from '../../platform/index.js';
import type { ResetCause } from './boot.js';

/** linux/watchdog.h: "Card previously reset the CPU", reported in a driver's bootstatus. */
const WDIOF_CARDRESET = 0x0020;

/**
 * `watchdog` when any watchdog driver reports that it reset the board before this boot (the
 * i6300esb, iTCO, imx2 and most SoC drivers read this from the hardware at probe time); `unknown`
 * when none does or there is no watchdog class at all.
 */
export async function watchdogResetCause(classDir = '/sys/class/watchdog'): Promise<ResetCause> {
  const devices = await readdir(classDir).catch(() => [] as string[]);
  for (const device of devices) {
    const text = await readFile(join(classDir, device, 'bootstatus'), 'utf8').catch(() => '');
    if ((Number.parseInt(text.trim(), 10) & WDIOF_CARDRESET) !== 0) return 'watchdog';
  }
  return 'unknown';
}

/**
 * Reboots through systemd so services stop in order and journald flushes. `--no-block` queues
 * the job and returns: waiting for it would have the shutdown SIGTERM our own child.
 */
export async function systemdReboot(exec: Exec, reason: string): Promise<void> {
  await exec.run('systemctl', ['reboot', '--no-block', `--message=outpost: ${reason}`], { timeoutMs: 30_000 });
}
