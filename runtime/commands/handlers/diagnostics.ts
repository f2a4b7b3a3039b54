/**
 * `diagnostics`: what an operator asks first of a gateway that misbehaves, in one answer: disk,
 * memory, load, uptime, versions, the link and outbox, the update state. Read-only, no root.
 */
import { statfs, readFile } from 'node:fs/promises';
import { loadavg, uptime } from 'node:os';
import { z } from 'zod';
import type { CommandHandler } from '../service.js';

/** The daemon's own parts of the answer, read at the time of the command. */
export interface DiagnosticsSources {
  readonly stateDir: string;
  readonly versions: () => Record<string, string | null>;
  readonly link: () => unknown;
  readonly outbox: () => unknown;
  readonly update: () => Promise<unknown>;
}

async function memory(): Promise<{ totalBytes: number; availableBytes: number } | null> {
  const text = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  const totalBytes = field('MemTotal');
  const availableBytes = field('MemAvailable');
  return Number.isFinite(totalBytes) && Number.isFinite(availableBytes) ? { totalBytes, availableBytes } : null;
}

async function disk(path: string): Promise<{ path: string; freeBytes: number; totalBytes: number; freeInodes: number } | null> {
  const stats = await statfs(path).catch(() => undefined);
  if (!stats) return null;
  return { path, freeBytes: stats.bavail * stats.bsize, totalBytes: stats.blocks * stats.bsize, freeInodes: stats.ffree };
}

export function diagnosticsHandler(sources: DiagnosticsSources): CommandHandler<Record<string, never>> {
  return {
    args: z.strictObject({}),
    timeoutMs: 10_000,
    async run() {
      const [load1, load5, load15] = loadavg();
      return {
        uptimeSec: Math.round(uptime()),
        load: { load1, load5, load15 },
        memory: await memory(),
        disk: await disk(sources.stateDir),
        versions: sources.versions(),
        link: sources.link(),
        outbox: sources.outbox(),
        update: await sources.update().catch((err: unknown) => ({ error: err instanceof Error ? err.message : String(err) })),
      };
    },
  };
}
