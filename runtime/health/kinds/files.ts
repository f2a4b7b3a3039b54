import { readFile } from 'node:fs/promises';
import { abortable } from './abort.js';

/** The errno code of a failed fs call (`ENOENT`...), if it has one. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

/** A text file of /proc or /sys, given up at the abort. */
export function readText(file: string, signal: AbortSignal): Promise<string> {
  return abortable(signal, () => readFile(file, 'utf8'));
}

/** Like {@link readText}, but `undefined` when the file is absent (a kernel without the feature). */
export async function readOptionalText(file: string, signal: AbortSignal): Promise<string | undefined> {
  try {
    return await readText(file, signal);
  } catch (err) {
    // EOPNOTSUPP: /proc/pressure exists but PSI was disabled at boot (psi=0).
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EOPNOTSUPP') return undefined;
    throw err;
  }
}

/** A short human rendering of a byte count. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
