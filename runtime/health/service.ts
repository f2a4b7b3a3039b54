/**
 * The health service: runs the configured checks (and greenboot's scripts) on their schedule,
 * remediates failing ones under backoff and the reboot breaker, and reports: a summary for the
 * state document, the API and the CLI; an event for every transition and remediation.
 *
 * Invariants:
 * - Events are handed to `emit` (the persistent outbox) before the action they announce: a reboot's
 *   event is stored before the reboot is asked for, so it is delivered after the reboot.
 * - A check's remediation runs only while it is failing (after its flap damping), at the
 *   remediator's pace; a passing run resets that pace.
 * - `healthy()` (the watchdog's view) is about progress, not verdicts: it is false only while the
 *   scheduler is stuck on a probe. Failing checks are remediated, never answered by starving the
 *   watchdog (that would be a reboot outside the breaker).
 */
import { z } from 'zod';
import type { HealthConfig, HealthCheckConfig } from '../config/index.js';
import type { Service } from '../lifecycle/index.js';
import type { Logger } from '../logs/index.js';
import type { Clock, Exec } from '../platform/index.js';
import type { Collection, Store } from '../store/index.js';
import { RebootBreaker, type RebootBreakerState } from './breaker.js';
import { greenbootChecks, runGreenbootHooks } from './greenboot.js';
import { createProbe, type ProbeDeps } from './kinds/index.js';
import type { CheckOutcome } from './probe.js';
import { Remediator, type RemediationPorts, type RemediationRecord } from './remediation.js';
import { RestartAttempts } from './restart-attempts.js';
import { HealthScheduler, type CheckRun, type CheckState, type ScheduledCheck } from './scheduler.js';

/** The summary: `failed` when a required check fails, `degraded` when a wanted one does. */
export type HealthStatus = 'unknown' | 'ok' | 'degraded' | 'failed';

/** What `outpost health`, `GET /v1/health` and the state document show. */
export interface HealthReport {
  readonly status: HealthStatus;
  readonly checks: readonly CheckState[];
  readonly rebootBreaker: RebootBreakerState;
  /** Why outpost is in safe mode (no deployment is healthy: it stays up and reachable, and does not reboot). */
  readonly safeMode?: string;
  /** Why a person is needed (the reboot breaker is open while a check still fails). */
  readonly attention?: string;
}

/** An event of the health domain (`outpost.event/1` on the events topic). */
export type HealthEvent =
  | { type: 'health-check-changed'; check: string; severity: 'required' | 'wanted'; from: CheckState['status']; to: CheckState['status']; detail?: string; measurements?: Readonly<Record<string, number>> }
  | ({ type: 'health-remediation'; measurements?: Readonly<Record<string, number>> } & Omit<RemediationRecord, 'outcome'> & { outcome: RemediationRecord['outcome'] | 'requested' });

/** Options of {@link HealthService}. */
export interface HealthServiceOptions {
  readonly config: HealthConfig;
  readonly store: () => Store;
  readonly clock: Clock;
  readonly exec: Exec;
  readonly log: Logger;
  readonly bootId: () => Promise<string>;
  readonly link?: ProbeDeps['link'];
  /** How actions are carried out (the installer's unit restart, outpost's restart, the update path's reboot). */
  readonly ports: Omit<RemediationPorts, 'exec' | 'reboot'> & { reboot(reason: string): Promise<void> };
  /**
   * The last rollback, which may leave no deployment healthy (`id` tells rollbacks apart), or
   * undefined. Safe mode holds from it until the required checks have all passed once after it
   * (recorded in the store, so a restart does not bring it back).
   */
  readonly rollback: () => { id: string; reason: string } | undefined;
  /** Why reboots belong to the update path now (an update under way), or undefined. */
  readonly rebootHeld?: () => string | undefined;
  /** Stores an event for delivery (the outbox); resolves once it is stored. */
  readonly emit: (event: HealthEvent) => Promise<void>;
  /** The report changed (a check's status, safe mode, the breaker). */
  readonly onChange?: (report: HealthReport) => void;
}

/** What outpost keeps of safe mode: the rollback it is over for. */
const safeModeSchema = z.looseObject({ rollback: z.string() });
const clearedKey = 'cleared';

/**
 * Summarises check states: `unknown` while a required check has no verdict yet (or, without
 * required checks, while none has), so `outpost health` is never green before they passed.
 */
export function summarize(states: readonly CheckState[]): HealthStatus {
  if (states.some((s) => s.status === 'failing' && s.severity === 'required')) return 'failed';
  if (states.some((s) => s.status === 'failing')) return 'degraded';
  if (states.some((s) => s.status === 'unknown' && s.severity === 'required')) return 'unknown';
  if (states.length > 0 && states.every((s) => s.status === 'unknown')) return 'unknown';
  return 'ok';
}

/** Runs the device's health checks for the daemon's lifetime. */
export class HealthService implements Service {
  readonly name = 'health';
  private scheduler: HealthScheduler | undefined;
  private remediator: Remediator | undefined;
  private breaker: RebootBreaker | undefined;
  private checks: HealthCheckConfig[] = [];
  private readonly probeDeps: ProbeDeps;
  private markStarted: () => void = () => undefined;
  private safeModeStore: Collection<z.infer<typeof safeModeSchema>> | undefined;
  /** The rollback after which every required check passed once: safe mode is over for it. */
  private clearedRollback: string | undefined;
  /** Resolves once start() has built the checks. */
  private readonly started = new Promise<void>((resolve) => {
    this.markStarted = resolve;
  });

  constructor(private readonly options: HealthServiceOptions) {
    this.probeDeps = {
      exec: options.exec,
      cgroupRoot: options.config.cgroupRoot,
      monotonicMs: () => options.clock.monotonicMs(),
      ...(options.link ? { link: options.link } : {}),
    };
  }

  async start(): Promise<void> {
    const { config, clock, log } = this.options;
    const greenboot = await greenbootChecks(config.greenboot, new Set(config.checks.map((c) => c.name)), (message) => log.warn(message)).catch((err: unknown) => {
      log.error('cannot read the greenboot check scripts; running without them', { dir: config.greenboot.dir, err });
      return [];
    });
    this.checks = [...config.checks, ...greenboot];
    this.safeModeStore = this.options.store().collection('health-safe-mode', safeModeSchema);
    this.clearedRollback = (await this.safeModeStore.get(clearedKey))?.rollback;
    const bootId = await this.options.bootId();
    this.breaker = await RebootBreaker.open(this.options.store(), { ...config.rebootBreaker, bootId, clock });
    const restarts = await RestartAttempts.open(this.options.store(), { bootId, clock });
    this.remediator = new Remediator({
      backoffMinSec: config.backoffMinSec,
      backoffMaxSec: config.backoffMaxSec,
      ports: { ...this.options.ports, exec: this.options.exec, reboot: (reason, about) => this.announceReboot(reason, about) },
      breaker: this.breaker,
      restarts,
      safeMode: () => this.safeMode(),
      ...(this.options.rebootHeld ? { rebootHeld: this.options.rebootHeld } : {}),
      clock,
    });
    this.scheduler = new HealthScheduler({ checks: this.checks.map((c) => this.scheduled(c)), clock, onRun: (run) => this.onRun(run) });
    this.scheduler.start();
    this.markStarted();
    if (this.checks.length > 0) log.info('health checks running', { checks: this.checks.map((c) => c.name) });
  }

  async stop(): Promise<void> {
    await this.scheduler?.stop();
    this.scheduler = undefined;
    // A probation still waiting for the checks gets none: it gives no verdict while outpost stops.
    this.markStarted();
  }

  /** False while the scheduler is stuck on a probe that ignores its timeout. */
  healthy(): boolean {
    return (this.scheduler?.stuck().length ?? 0) === 0;
  }

  report(): HealthReport {
    const checks = this.scheduler?.states() ?? [];
    const status = summarize(checks);
    const rebootBreaker = this.breaker?.state() ?? { open: false, recent: 0, maxReboots: this.options.config.rebootBreaker.maxReboots, windowSec: this.options.config.rebootBreaker.windowSec };
    const safeMode = status === 'failed' || status === 'degraded' ? this.safeMode() : undefined;
    const attention = rebootBreaker.open && status !== 'ok' && status !== 'unknown' ? rebootBreaker.reason : undefined;
    return { status, checks, rebootBreaker, ...(safeMode === undefined ? {} : { safeMode }), ...(attention === undefined ? {} : { attention }) };
  }

  /**
   * The required checks as probation runs them: each once per round, as a run of its schedule
   * (never two at once; rates keep their samples), without waiting for its interval or damping.
   * A provisional pass (a first sample) is no verdict: the round fails and asks again. Waits for
   * the service's start, which reads greenboot's scripts.
   */
  async requiredChecks(): Promise<{ name: string; run(): Promise<{ ok: boolean; detail?: string }> }[]> {
    await this.started;
    const scheduler = this.scheduler;
    if (!scheduler) return [];
    return this.checks
      .filter((c) => c.severity === 'required')
      .map((c) => ({
        name: c.name,
        run: async () => {
          const outcome = await scheduler.runNow(c.name);
          return outcome.ok && outcome.provisional ? { ok: false, detail: `no verdict yet (${outcome.detail ?? 'provisional'})` } : outcome;
        },
      }));
  }

  /** Operator reset of the reboot breaker. */
  async resetBreaker(): Promise<void> {
    await this.breaker?.reset();
    this.changed();
  }

  /** Runs greenboot's green.d (after a commit) or red.d (after a rollback) scripts. */
  async runHooks(which: 'green' | 'red'): Promise<void> {
    const runs = await runGreenbootHooks(this.options.config.greenboot, which, this.options.exec);
    for (const run of runs) {
      if (run.ok) this.options.log.info(`greenboot ${which}.d script ran`, { script: run.script });
      else this.options.log.error(`greenboot ${which}.d script failed`, { script: run.script, error: run.error });
    }
  }

  /** Why a reboot cannot help (no deployment is healthy), or undefined. */
  private safeMode(): string | undefined {
    const rollback = this.options.rollback();
    if (rollback === undefined || rollback.id === this.clearedRollback) return undefined;
    return `${rollback.reason}, and this deployment has not passed its required checks since`;
  }

  /** Once every required check passes after a rollback, this deployment is healthy: safe mode ends for good. */
  private async clearSafeMode(): Promise<void> {
    const rollback = this.options.rollback();
    if (rollback === undefined || rollback.id === this.clearedRollback || !this.safeModeStore) return;
    const states = this.scheduler?.states() ?? [];
    const required = states.filter((s) => s.severity === 'required');
    if (!(required.length > 0 ? required : states).every((s) => s.status === 'passing')) return;
    await this.options.store().batch().put(this.safeModeStore, clearedKey, { rollback: rollback.id }).commit();
    this.clearedRollback = rollback.id;
    this.options.log.info('every required check passed after the rollback: safe mode is over', { rollback: rollback.id });
  }

  private scheduled(check: HealthCheckConfig): ScheduledCheck {
    return {
      name: check.name,
      severity: check.severity,
      intervalMs: check.intervalSec * 1000,
      timeoutMs: check.timeoutSec * 1000,
      failAfter: check.failAfter,
      recoverAfter: check.recoverAfter,
      probe: createProbe(check, this.probeDeps),
    };
  }

  private async onRun(run: CheckRun): Promise<void> {
    const { log } = this.options;
    const { state, outcome } = run;
    if (run.changedFrom !== undefined) {
      const level = state.status === 'failing' ? 'warn' : 'info';
      log[level](`health check ${state.name} is ${state.status}`, { from: run.changedFrom, detail: outcome.detail, measurements: outcome.measurements });
      await this.emit({ type: 'health-check-changed', check: state.name, severity: state.severity, from: run.changedFrom, to: state.status, ...details(outcome) });
      this.changed();
    }
    const config = this.checks.find((c) => c.name === state.name);
    if (state.status === 'passing') {
      // A provisional pass (a first sample after a restart) is no evidence of recovery: resetting
      // on it would start a restart-outpost streak over at every restart it causes.
      if (!outcome.provisional) await this.remediator?.passed(state.name).catch((err: unknown) => log.error(`cannot clear the remediation attempts of ${state.name}`, { err }));
      await this.clearSafeMode().catch((err: unknown) => log.error('cannot record the end of safe mode', { err }));
    }
    // A run that passed while damping still says failing (recoverAfter > 1) is evidence against
    // acting: a reboot there would hit a device that just recovered and spend the breaker's budget.
    if (state.status !== 'failing' || outcome.ok || !config?.remediation || !this.remediator) return;
    if (outcome.unmeasured) {
      log.warn(`health check ${state.name} could not measure: its remediation waits for a measurement`, { detail: outcome.detail });
      return;
    }
    const record = await this.remediator.failing(state.name, config.remediation, outcome.detail);
    if (record.outcome === 'backing-off') return;
    const level = record.outcome === 'done' ? 'warn' : 'error';
    log[level](`health remediation of ${state.name}: ${record.action} ${record.outcome}`, { ...record });
    // A reboot's event (`requested`) went out before the reboot was asked for (announceReboot).
    if (!(record.action === 'reboot' && record.outcome === 'done')) await this.emit({ type: 'health-remediation', ...record, ...(outcome.measurements ? { measurements: outcome.measurements } : {}) });
    if (record.outcome === 'needs-attention' || record.outcome === 'safe-mode') this.changed();
  }

  /** Tells the daemon the report changed; its failure (publishing the state) must not stop a remediation. */
  private changed(): void {
    try {
      this.options.onChange?.(this.report());
    } catch (err) {
      this.options.log.error('cannot publish the health report', { err });
    }
  }

  /** Stores the reboot's event first: after the reboot nothing of this process is left to send it. */
  private async announceReboot(reason: string, about: { check: string; attempt: number }): Promise<void> {
    await this.emit({ type: 'health-remediation', ...about, action: 'reboot', outcome: 'requested', detail: reason });
    await this.options.ports.reboot(reason);
  }

  private async emit(event: HealthEvent): Promise<void> {
    try {
      await this.options.emit(event);
    } catch (err) {
      this.options.log.error('cannot store a health event', { type: event.type, err });
    }
  }
}

function details(outcome: CheckOutcome): { detail?: string; measurements?: Readonly<Record<string, number>> } {
  return { ...(outcome.detail === undefined ? {} : { detail: outcome.detail }), ...(outcome.measurements === undefined ? {} : { measurements: outcome.measurements }) };
}
