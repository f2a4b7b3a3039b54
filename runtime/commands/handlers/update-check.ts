/** `update-check`: the same check `outpost update check` runs; its answer is the result. */
import { z } from 'zod';
import type { CommandHandler } from '../service.js';

export function updateCheckHandler(check: () => Promise<unknown>): CommandHandler<Record<string, never>> {
  return { args: z.strictObject({}), timeoutMs: 10 * 60_000, run: () => check() };
}
