/**
 * What a health check looks at, as the scheduler sees it: one run, bounded by the signal, with a
 * verdict, a reason a person can act on, and the numbers it decided from (they go into events).
 */

/** The result of one run of one check. */
export interface CheckOutcome {
  readonly ok: boolean;
  /** Why it failed (or a short note when it passed). */
  readonly detail?: string;
  /** What the verdict was decided from, e.g. `{ cpuPercent: 97.5, maxPercent: 80 }`. */
  readonly measurements?: Readonly<Record<string, number>>;
}

/** One check's probe. Aborted at the check's timeout: it must stop, and kill what it started. */
export interface CheckProbe {
  run(signal: AbortSignal): Promise<CheckOutcome>;
}
