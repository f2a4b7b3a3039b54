/** Reads a process's memory from /proc/<pid>/status, in KiB, as the kernel accounts it. */
import { readFileSync } from 'node:fs';

/** Memory figures of one process. */
export interface ProcMemory {
  rssAnonKiB: number;
  rssKiB: number;
}

/** RssAnon and VmRSS of one process (not its children: each subject runs as a single process). */
export function procMemory(pid: number): ProcMemory {
  const field = (text: string, name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rssAnonKiB: field(text, 'RssAnon'), rssKiB: field(text, 'VmRSS') };
}
