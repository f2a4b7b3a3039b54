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
  /**
   * Passed without a verdict of its own yet: a rate's first sample, a restart count with no
   * baseline, the link's start-up grace. The schedule counts it as passing; probation does not
   * (a trial must be judged on evidence), and asks again next round.
   */
  readonly provisional?: true;
  /**
   * Failed because the probe could not look (systemd not reachable, a file it needs missing), not
   * because what it looks at is unhealthy: the check fails, but its remediation is not run (a
   * `restart-unit` of a stopped unit would start it).
   */
  readonly unmeasured?: true;
}

/** One check's probe. Aborted at the check's timeout: it must stop, and kill what it started. */
export interface CheckProbe {
  run(signal: AbortSignal): Promise<CheckOutcome>;
}

/**
 * What a script health runs (a check, a greenboot script, a remediation command) may print on
 * stdout or stderr before it is stopped: the daemon's heap is small, and these scripts are not outpost's.
 */
export const scriptOutputBytes = 1024 * 1024;
