/**
 * Probation: after a trial boot the new release must show it works — every check passing at
 * once — within a window. Decided on the device alone: with the broker down, a check that needs
 * the broker is only included when the config says the broker is required.
 */
import type { Exec } from '../platform/index.js';

/** One health check: resolves with ok and, when failing, why. */
export interface ProbationCheck {
  readonly name: string;
  run(): Promise<{ ok: boolean; detail?: string }>;
}

/** The verdict. */
export type ProbationResult = { ok: true } | { ok: false; reason: string };

/** Timing of a probation run; `sleep` and `now` are injectable for tests. */
export interface ProbationTiming {
  deadline: Date;
  intervalMs: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

/** Runs all checks each round until all pass together, or fails once the deadline has passed. */
export async function runProbation(checks: readonly ProbationCheck[], timing: ProbationTiming): Promise<ProbationResult> {
  const now = timing.now ?? (() => new Date());
  const sleep = timing.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (;;) {
    const results = await Promise.all(
      checks.map(async (check) => {
        try {
          return { name: check.name, ...(await check.run()) };
        } catch (err) {
          return { name: check.name, ok: false, detail: err instanceof Error ? err.message : String(err) };
        }
      }),
    );
    const failing = results.filter((r) => !r.ok);
    if (failing.length === 0) return { ok: true };
    if (now().getTime() >= timing.deadline.getTime()) {
      return { ok: false, reason: `health checks failed during probation: ${failing.map((f) => `${f.name}${f.detail ? ` (${f.detail})` : ''}`).join(', ')}` };
    }
    await sleep(Math.min(timing.intervalMs, Math.max(0, timing.deadline.getTime() - now().getTime())));
  }
}

/** A check that runs a command; exit status 0 passes. */
export function execCheck(exec: Exec, name: string, command: readonly string[], timeoutMs: number, env: Record<string, string> = {}): ProbationCheck {
  return {
    name,
    run: async () => {
      const [cmd, ...args] = command;
      if (cmd === undefined) return { ok: false, detail: 'empty command' };
      try {
        await exec.run(cmd, args, { timeoutMs, env });
        return { ok: true };
      } catch (err) {
        return { ok: false, detail: err instanceof Error ? err.message.split('\n')[0] : String(err) };
      }
    },
  };
}

/** A check backed by an in-process predicate (daemon up, broker reachable). */
export function predicateCheck(name: string, predicate: () => boolean, failing: string): ProbationCheck {
  return { name, run: async () => (predicate() ? { ok: true } : { ok: false, detail: failing }) };
}
