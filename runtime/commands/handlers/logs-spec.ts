/**
 * What `logs` (logs.ts) is verified against, apart from the code that reads and compresses the
 * journal, which loads on the first `logs` command (handlers/lazy.ts).
 */
import { z } from 'zod';
import type { HandlerSpec } from './lazy.js';

export const journalctlTimeoutMs = 20_000;

const unitSeconds = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

export function seconds(duration: string): number {
  return Number(duration.slice(0, -1)) * unitSeconds[duration.slice(-1) as keyof typeof unitSeconds];
}

const logsArgs = z.strictObject({
  lines: z.number().int().min(1).max(5000).default(200),
  /** Only entries this recent: a number and a unit, `90s`, `15m`, `6h`, `7d` (at most 366 days). */
  since: z
    .string()
    .regex(/^[1-9][0-9]{0,5}[smhd]$/, 'must be a duration such as "90s", "15m", "6h" or "7d"')
    .refine((text) => seconds(text) <= 366 * 86_400, 'must be at most 366 days')
    .optional(),
});

export type LogsArgs = z.output<typeof logsArgs>;

export const logsSpec: HandlerSpec<LogsArgs> = { args: logsArgs, timeoutMs: journalctlTimeoutMs + 10_000 };
