/** The kernel's id for this boot. */
import { readFile } from 'node:fs/promises';

/** The kernel's id for this boot; changes on every boot, including watchdog resets. */
export async function kernelBootId(path = '/proc/sys/kernel/random/boot_id'): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}
