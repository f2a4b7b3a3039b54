/** What the real bootloader adapters share: the kernel boot id and a reboot through systemd. */
import { readFile } from 'node:fs/promises';
import type { Exec } from '../../platform/index.js';

/** The kernel's id for this boot; changes on every boot, including watchdog resets. */
export async function kernelBootId(path = '/proc/sys/kernel/random/boot_id'): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}

/** Reboots through systemd so services stop in order and journald flushes. */
export async function systemdReboot(exec: Exec, reason: string): Promise<void> {
  await exec.run('systemctl', ['reboot', `--message=outpost: ${reason}`], { timeoutMs: 30_000 });
}
