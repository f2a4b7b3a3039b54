/**
 * Runs health checks on their intervals and keeps each check's state.
 *
 * Invariants:
 * - A check never overlaps itself: its next run is timed from the end of the previous one.
 * - Every run ends at the check's timeout: the probe's signal is aborted then, and the run counts
 *   failing. A probe that still has not settled {@link stuckGraceMs} later is reported by
 *   `stuck()`, and the watchdog pings stop naming it: a probe that ignores its signal is a bug in
 *   outpost, which a restart clears, not a verdict on the device.
 * - Flap damping: a check turns failing after `failAfter` failing runs in a row and passing after
 *   `recoverAfter` passing runs in a row; before its first verdict it is `unknown`. Only a change of
 *   state is a transition.
 * - Timing is on CLOCK_MONOTONIC; the wall clock only stamps the states for reports.
 * - Nothing here blocks the event loop: probes are asynchronous and timers are unref'd.
 */
import type { Clock } from '../platform/index.js';
import type { CheckOutcome, CheckProbe } from './probe.js';

/** How long past its timeout a probe may take to settle before the scheduler counts as stuck. */
export const stuckGraceMs = 10_000;

/** A check as the scheduler runs it. */
export interface ScheduledCheck {
  readonly name: string;
  readonly severity: 'required' | 'wanted';
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly failAfter: number;
  readonly recoverAfter: number;
  readonly probe: CheckProbe;
}

/** Where a check stands. */
export type CheckStatus = 'unknown' | 'passing' | 'failing';

/** One check's state, as reports show it. */
export interface CheckState {
  readonly name: string;
  readonly severity: 'required' | 'wanted';
  readonly status: CheckStatus;
  /** When `status` last changed (wall clock, ISO 8601); the scheduler's start for `unknown`. */
  readonly since: string;
  /** The last run's end (wall clock), absent before the first. */
  readonly lastRunAt?: string;
  /** The last run's verdict and why. */
  readonly lastOk?: boolean;
  readonly detail?: string;
  readonly measurements?: Readonly<Record<string, number>>;
  /** Failing (or passing) runs in a row. */
  readonly streak: number;
}

/** A run's result together with the state it left. */
export interface CheckRun {
  readonly check: ScheduledCheck;
  readonly outcome: CheckOutcome;
  readonly state: CheckState;
  /** The status before the run, when the run changed it. */
  readonly changedFrom?: CheckStatus;
}

/** Timer functions, injectable so tests drive time. */
export interface SchedulerTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: SchedulerTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Options of {@link HealthScheduler}. */
export interface HealthSchedulerOptions {
  readonly checks: readonly ScheduledCheck[];
  readonly clock: Clock;
  /** Called after every run, in order per check; a rejection is the caller's to log (it does not stop the check). */
  readonly onRun: (run: CheckRun) => Promise<void> | void;
  readonly timers?: SchedulerTimers;
  /** First runs are spread this far apart, so a start does not run every check at once. */
  readonly staggerMs?: number;
}

interface Slot {
  readonly check: ScheduledCheck;
  state: CheckState;
  timer: unknown;
  /** CLOCK_MONOTONIC ms at which the running probe started, undefined when idle. */
  runningSinceMs: number | undefined;
  running: Promise<void> | undefined;
  controller: AbortController | undefined;
  lastOutcome: CheckOutcome | undefined;
}

/** The next state after a run; pure, so damping is tested on its own. */
export function nextState(check: Pick<ScheduledCheck, 'failAfter' | 'recoverAfter'>, state: CheckState, outcome: CheckOutcome, at: string): CheckState {
  const streak = state.lastOk === outcome.ok ? state.streak + 1 : 1;
  let status = state.status;
  if (outcome.ok && status !== 'passing' && (status === 'unknown' || streak >= check.recoverAfter)) status = 'passing';
  if (!outcome.ok && status !== 'failing' && streak >= check.failAfter) status = 'failing';
  return {
    name: state.name,
    severity: state.severity,
    status,
    since: status === state.status ? state.since : at,
    lastRunAt: at,
    lastOk: outcome.ok,
    ...(outcome.detail === undefined ? {} : { detail: outcome.detail }),
    ...(outcome.measurements === undefined ? {} : { measurements: outcome.measurements }),
    streak,
  };
}

/** Runs every check on its own interval until stopped. */
export class HealthScheduler {
  private readonly slots: Slot[];
  private readonly timers: SchedulerTimers;
  private stopped = true;

  constructor(private readonly options: HealthSchedulerOptions) {
    this.timers = options.timers ?? realTimers;
    const since = options.clock.now().toISOString();
    this.slots = options.checks.map((check) => ({
      check,
      state: { name: check.name, severity: check.severity, status: 'unknown', since, streak: 0 },
      timer: undefined,
      runningSinceMs: undefined,
      running: undefined,
      controller: undefined,
      lastOutcome: undefined,
    }));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const staggerMs = this.options.staggerMs ?? 250;
    this.slots.forEach((slot, index) => this.schedule(slot, index * staggerMs));
  }

  /** Aborts running probes and waits for them (each bounded by its own abort). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const slot of this.slots) {
      this.timers.clearTimeout(slot.timer);
      slot.controller?.abort(new Error('outpost is stopping'));
    }
    await Promise.all(this.slots.map((slot) => slot.running));
  }

  states(): CheckState[] {
    return this.slots.map((slot) => slot.state);
  }

  /**
   * The checks whose probe is still running past its timeout and the grace: the scheduler is
   * stuck on them. Empty while it makes progress.
   */
  stuck(): string[] {
    const now = this.options.clock.monotonicMs();
    return this.slots.filter((slot) => slot.runningSinceMs !== undefined && now - slot.runningSinceMs > slot.check.timeoutMs + stuckGraceMs).map((slot) => slot.check.name);
  }

  /**
   * Runs check `name` now, as a run of its schedule (its state, remediation and next run follow
   * from it), or, when it is running, waits for that run: either way never two at once. For
   * probation's rounds, which must not wait for a check's interval.
   */
  async runNow(name: string): Promise<CheckOutcome> {
    const slot = this.slots.find((s) => s.check.name === name);
    if (slot === undefined) return { ok: false, detail: `no health check is named ${name}` };
    if (this.stopped) return { ok: false, detail: 'outpost is stopping' };
    if (slot.runningSinceMs === undefined) {
      this.timers.clearTimeout(slot.timer);
      slot.timer = undefined;
      slot.running = this.runSlot(slot);
    }
    await slot.running;
    return slot.runningSinceMs === undefined && slot.lastOutcome !== undefined ? slot.lastOutcome : { ok: false, detail: 'outpost is stopping' };
  }

  private schedule(slot: Slot, delayMs: number): void {
    if (this.stopped) return;
    slot.timer = this.timers.setTimeout(() => {
      slot.timer = undefined;
      slot.running = this.runSlot(slot);
    }, delayMs);
  }

  private async runSlot(slot: Slot): Promise<void> {
    const controller = new AbortController();
    slot.controller = controller;
    slot.runningSinceMs = this.options.clock.monotonicMs();
    const outcome = await runBounded(slot.check, controller, this.timers);
    slot.runningSinceMs = undefined;
    slot.controller = undefined;
    slot.lastOutcome = outcome;
    // A run cut short by the stop says nothing about the check.
    if (this.stopped) return;
    const previous = slot.state.status;
    slot.state = nextState(slot.check, slot.state, outcome, this.options.clock.now().toISOString());
    try {
      await this.options.onRun({ check: slot.check, outcome, state: slot.state, ...(slot.state.status === previous ? {} : { changedFrom: previous }) });
    } catch {
      // The caller logs its own failures; a check keeps running whatever its reporting did.
    }
    this.schedule(slot, slot.check.intervalMs);
  }
}

/** Runs the probe until it settles, aborting its signal at the timeout; a timed-out run fails. */
async function runBounded(check: Pick<ScheduledCheck, 'probe' | 'timeoutMs' | 'name'>, controller: AbortController, timers: SchedulerTimers): Promise<CheckOutcome> {
  let timedOut = false;
  const timeout = timers.setTimeout(() => {
    timedOut = true;
    controller.abort(new Error(`timed out after ${check.timeoutMs} ms`));
  }, check.timeoutMs);
  try {
    const outcome = await check.probe.run(controller.signal);
    if (timedOut) return { ok: false, detail: `timed out after ${check.timeoutMs} ms`, ...(outcome.measurements ? { measurements: outcome.measurements } : {}) };
    return outcome;
  } catch (err) {
    if (timedOut) return { ok: false, detail: `timed out after ${check.timeoutMs} ms` };
    return { ok: false, detail: err instanceof Error ? err.message : String(err) };
  } finally {
    timers.clearTimeout(timeout);
  }
}
