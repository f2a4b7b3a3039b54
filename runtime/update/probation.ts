/**
 * Probation: after a trial boot the new release must show it works — every check passing at
 * once — within a window. Decided on the device alone: with the broker down, a check that needs
 * the broker is only included when the config says the broker is required.
 */
import { z } from 'zod';
import { monotonicMs, type Exec } from '../platform/index.js';
import type { Collection, Store } from '../store/index.js';

/** One health check: resolves with ok and, when failing, why. */
export interface ProbationCheck {
  readonly name: string;
  run(): Promise<{ ok: boolean; detail?: string }>;
}

/** The verdict. */
export type ProbationResult = { ok: true } | { ok: false; reason: string };

/** Timing of a probation run; `sleep` and `nowMs` are injectable for tests. */
export interface ProbationTiming {
  /** End of the window, on the `nowMs` clock. */
  deadlineMs: number;
  intervalMs: number;
  /** CLOCK_MONOTONIC by default: an NTP jump must neither end the window early nor stretch it. */
  nowMs?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /**
   * Aborted when outpost stops: a check failing because the system is going down says nothing
   * about the release, so there is no verdict; the run rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

/** Runs all checks each round until all pass together, or fails once the deadline has passed. */
export async function runProbation(checks: readonly ProbationCheck[], timing: ProbationTiming): Promise<ProbationResult> {
  const nowMs = timing.nowMs ?? monotonicMs;
  const { signal } = timing;
  const sleep = timing.sleep ?? ((ms: number) => new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  }));
  for (;;) {
    signal?.throwIfAborted();
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
    signal?.throwIfAborted();
    if (nowMs() >= timing.deadlineMs) {
      return { ok: false, reason: `health checks failed during probation: ${failing.map((f) => `${f.name}${f.detail ? ` (${f.detail})` : ''}`).join(', ')}` };
    }
    await sleep(Math.min(timing.intervalMs, Math.max(0, timing.deadlineMs - nowMs())));
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
        // Its own process group: a check's hung grandchild or background child does not outlive it.
        await exec.run(cmd, args, { timeoutMs, env, ownGroup: true });
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

const windowSchema = z.looseObject({ commit: z.string(), bootId: z.string(), startMs: z.number().nonnegative() });
const windowKey = 'window';

/**
 * Where probation of a trial began, on CLOCK_MONOTONIC of the boot it runs in. It lives in its own
 * collection, not in the update record: after a fallback or a rollback the previous release's
 * outpost reads that record, and older releases parse it strictly; a collection they never open
 * cannot break them. A record without a window (written by an older outpost) simply starts
 * one at the first probation step of the boot.
 */
export class ProbationWindows {
  private readonly windows: Collection<z.infer<typeof windowSchema>>;

  constructor(
    private readonly store: Store,
    private readonly nowMs: () => number = monotonicMs,
  ) {
    this.windows = store.collection('update-probation', windowSchema);
  }

  /** When probation of `commit` began in boot `bootId`; the first call in that boot records now (fsync'd). */
  async startMs(commit: string, bootId: string): Promise<number> {
    const known = await this.windows.get(windowKey);
    if (known && known.commit === commit && known.bootId === bootId) return known.startMs;
    const startMs = this.nowMs();
    await this.store.batch().put(this.windows, windowKey, { commit, bootId, startMs }).commit();
    return startMs;
  }
}
