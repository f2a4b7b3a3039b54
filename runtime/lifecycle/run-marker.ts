/**
 * Notices an outpost that did not stop cleanly. A marker in the state directory is written at
 * start and removed after a clean stop; finding one at start means the process before was killed
 * (systemd's watchdog, the OOM killer) or crashed in this boot, or the boot before ended under it
 * (power loss, a reset). /run cannot tell: systemd empties the unit's RuntimeDirectory between runs.
 */
import { readFile, rm } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../platform/index.js';

const markerSchema = z.looseObject({ pid: z.number().int(), bootId: z.string(), startedAt: z.string() });

/** The run before this one, which did not stop cleanly. */
export interface UncleanStop {
  pid: number;
  startedAt: string;
  /** It ran in this boot (killed or crashed) rather than in one that ended under it. */
  sameBoot: boolean;
}

/** Records this run in `file` and returns the one before it if that did not stop cleanly. */
export async function markRunning(file: string, run: { pid: number; bootId: string; startedAt: Date }): Promise<UncleanStop | null> {
  const before = markerSchema.safeParse(parseJson(await readFile(file, 'utf8').catch(() => 'null')));
  await writeFileAtomic(file, JSON.stringify({ pid: run.pid, bootId: run.bootId, startedAt: run.startedAt.toISOString() }), { mode: 0o600 });
  if (!before.success) return null;
  return { pid: before.data.pid, startedAt: before.data.startedAt, sameBoot: before.data.bootId === run.bootId };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** After a clean stop: the next start finds no marker. */
export async function markStopped(file: string): Promise<void> {
  await rm(file, { force: true });
}

/** The journal line for an unclean stop. */
export function uncleanStopMessage(stop: UncleanStop): string {
  return stop.sameBoot
    ? `the outpost before this one (pid ${stop.pid}, started ${stop.startedAt}) did not stop cleanly: killed (watchdog, out of memory) or crashed`
    : `the last boot ended while outpost ran (pid ${stop.pid}, started ${stop.startedAt}): power loss, a reset or a forced reboot`;
}
