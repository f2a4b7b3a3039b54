/**
 * When the update service runs its scheduled work. Work that failed (a resumed update, a check)
 * is retried much sooner than the check interval, on a capped exponential backoff with jitter:
 * a network blip costs seconds instead of the hour until the next check, a long outage costs at
 * most one retry per `retryMaxMs`, and a fleet that lost its server at the same moment does not
 * come back in step.
 */

/** Timing of the scheduled work; every field is injectable (STYLE 8) so tests need not wait. */
export interface Schedule {
  /** Delay of the first tick after start. */
  firstCheckMs: number;
  /** Retry delay after the first failure; it doubles with each further failure in a row. */
  retryMinMs: number;
  /** Cap on the retry delay; the check interval caps it too. */
  retryMaxMs: number;
  /** Uniform in [0, 1): the jitter. */
  random: () => number;
  /** Arms a one-shot timer; returns its cancel. */
  timer: (fn: () => void, ms: number) => () => void;
}

/** Production timing: first tick 5 s after start, retries from 30 s up to 10 min. */
export const defaultSchedule: Schedule = {
  firstCheckMs: 5_000,
  retryMinMs: 30_000,
  retryMaxMs: 10 * 60_000,
  random: Math.random,
  timer: (fn, ms) => {
    const handle = setTimeout(fn, ms);
    return () => clearTimeout(handle);
  },
};

/**
 * The delay before the next attempt after `failures` failures in a row (at least 1). Half of the
 * capped step is fixed and half random ("equal jitter"): spread out, yet never close to zero,
 * so a server that is down is not hammered.
 */
export function retryDelayMs(failures: number, schedule: Pick<Schedule, 'retryMinMs' | 'retryMaxMs' | 'random'>, intervalMs: number): number {
  const cap = Math.min(schedule.retryMaxMs, intervalMs);
  const step = Math.min(cap, schedule.retryMinMs * 2 ** Math.min(30, Math.max(0, failures - 1)));
  return Math.round(step / 2 + (step / 2) * schedule.random());
}
