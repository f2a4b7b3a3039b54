/**
 * Remediation: what outpost does about a check that has turned failing, and how often.
 *
 * Invariants:
 * - Per check, on CLOCK_MONOTONIC: the first action right away, then one after backoffMinSec,
 *   doubling each time the check is still failing, up to backoffMaxSec, with up to 10% jitter
 *   (never below the min nor above the max) so a fleet failing together does not act in step.
 *   Passing again starts the check's backoff over. An attempt that took no action (breaker open,
 *   safe mode) moves the backoff on too: the same answer is reported at the backoff's pace, not at
 *   every run of the check.
 * - A reboot goes through the breaker, which records it before it is asked for; in safe mode (no
 *   deployment is healthy, so a reboot can only land in another failing one) none is taken.
 * - An action's failure is a result, never a throw: the caller reports it and the check runs on.
 * - Backoff lives in memory and starts over at a daemon restart (the restart may be what fixed
 *   things), except for `restart-outpost`, whose restart would otherwise start it over every time:
 *   its attempts are persisted (restart-attempts.ts) before the restart is asked for, and a new
 *   process resumes the check's streak from them (within the same boot): the next attempt waits
 *   the backoff of the last one from when it was made, and the count goes on. An attempt that
 *   cannot be recorded restarts nothing. A pass clears them like the rest of the streak.
 * - `restart-outpost` also waits backoffMinSec after the remediator was created, so a check that
 *   passes once after each restart (clearing its attempts) and fails again loops no faster.
 */
import type { HealthCheckConfig } from '../config/index.js';
import type { Clock, Exec } from '../platform/index.js';
import type { RebootBreaker } from './breaker.js';
import type { RestartAttempts } from './restart-attempts.js';
import { scriptOutputBytes } from './probe.js';

/** One configured remediation (config `health.checks[].remediation`). */
export type Remediation = NonNullable<HealthCheckConfig['remediation']>;

/** How an action is carried out; wired by the daemon. */
export interface RemediationPorts {
  /** The installer's unit.restart (or systemctl). */
  restartUnit(unit: string): Promise<void>;
  /** Runs `exec` actions, with the action's timeoutSec as timeoutMs. */
  exec: Exec;
  /** Stops outpost with a non-zero code so systemd starts it again. */
  restartOutpost(reason: string): void;
  /** The update path's reboot; `about` names the check and attempt, for the event announcing it. */
  reboot(reason: string, about: { check: string; attempt: number }): Promise<void>;
}

/** What one call of {@link Remediator.failing} did; the caller turns it into an event. */
export interface RemediationRecord {
  check: string;
  action: Remediation['action'];
  /**
   * `backing-off`: not yet, see nextInMs; `needs-attention`: the reboot breaker is open;
   * `safe-mode`: no reboot while no deployment is healthy; `held`: no reboot while the update path
   * owns reboots (a release on trial: its probation decides, and a reboot would use up a trial boot).
   */
  outcome: 'done' | 'failed' | 'needs-attention' | 'safe-mode' | 'held' | 'backing-off';
  detail?: string;
  /** The attempt in this failing streak, from 1; for `backing-off`, the one that is waiting. */
  attempt: number;
  /** When the next attempt may come, if the check is still failing. */
  nextInMs?: number;
}

/** Options of {@link Remediator}. */
export interface RemediatorOptions {
  backoffMinSec: number;
  backoffMaxSec: number;
  ports: RemediationPorts;
  breaker: RebootBreaker;
  /** Where `restart-outpost` attempts outlive the process they restart. */
  restarts: RestartAttempts;
  /** Why no deployment is healthy (the update path rolled back and the old one fails too), or undefined. */
  safeMode: () => string | undefined;
  /** Why reboots belong to someone else right now (an update under way), or undefined. */
  rebootHeld?: () => string | undefined;
  clock: Clock;
  /** In [0, 1): the jitter; Math.random by default. */
  random?: () => number;
}

/** How an action went; the attempt's bookkeeping is added by the caller. */
type ActionResult = Pick<RemediationRecord, 'outcome' | 'detail'>;
type Attempt = { check: string; attempt: number };
type Handlers = { [A in Remediation['action']]: (action: Extract<Remediation, { action: A }>, reason: string, about: Attempt) => Promise<ActionResult> };

const maxJitter = 0.1;

/** Decides when a failing check is remediated again, and does it through the ports. */
export class Remediator {
  private readonly streaks = new Map<string, { attempts: number; nextAtMs: number }>();
  private readonly startedMs: number;
  private readonly handlers: Handlers;

  constructor(private readonly options: RemediatorOptions) {
    this.startedMs = options.clock.monotonicMs();
    const { ports, breaker, restarts, safeMode } = options;
    this.handlers = {
      'restart-unit': (action) => outcomeOf(() => ports.restartUnit(action.unit)),
      exec: (action) => {
        const [cmd, ...args] = action.command;
        if (cmd === undefined) return Promise.resolve({ outcome: 'failed', detail: 'empty command' });
        return outcomeOf(() => ports.exec.run(cmd, args, { timeoutMs: action.timeoutSec * 1000, ownGroup: true, maxBufferBytes: scriptOutputBytes }));
      },
      'restart-outpost': async (_action, reason, about) => {
        const recorded = await outcomeOf(() => restarts.record(about.check, about.attempt));
        if (recorded.outcome === 'failed') return { outcome: 'failed', detail: `no restart: cannot record the attempt first: ${recorded.detail}` };
        return outcomeOf(async () => ports.restartOutpost(reason));
      },
      reboot: async (_action, reason, about) => {
        const unsafe = safeMode();
        if (unsafe !== undefined) return { outcome: 'safe-mode', detail: `no reboot in safe mode: ${unsafe}` };
        const held = options.rebootHeld?.();
        if (held !== undefined) return { outcome: 'held', detail: `no reboot for health now: ${held}` };
        if (!(await breaker.allow(reason))) return { outcome: 'needs-attention', detail: breaker.state().reason ?? 'the reboot breaker is open' };
        return outcomeOf(() => ports.reboot(reason, about));
      },
    };
  }

  /**
   * The check is failing (the scheduler's verdict, after its flap damping): acts when its backoff
   * allows, else says when it will. `detail` is the check's reason, passed on to the reboot and the
   * restart so their logs say why.
   */
  async failing(check: string, remediation: Remediation, detail?: string): Promise<RemediationRecord> {
    const now = this.options.clock.monotonicMs();
    const streak = this.streaks.get(check) ?? this.resumed(check, remediation, now);
    this.streaks.set(check, streak);
    const notBefore = remediation.action === 'restart-outpost' ? Math.max(streak.nextAtMs, this.startedMs + this.options.backoffMinSec * 1000) : streak.nextAtMs;
    const base = { check, action: remediation.action };
    if (now < notBefore) return { ...base, outcome: 'backing-off', attempt: streak.attempts + 1, nextInMs: notBefore - now };
    // Moved on before acting: a second call while the action runs backs off instead of acting twice.
    const attempt = (streak.attempts += 1);
    const delayMs = this.delayMs(attempt);
    streak.nextAtMs = now + delayMs;
    const reason = `health check ${check} is failing${detail === undefined ? '' : ` (${detail})`}; remediation attempt ${attempt}`;
    const result = await this.run(remediation, reason, { check, attempt });
    return { ...base, ...result, attempt, nextInMs: delayMs };
  }

  /** The check passes again: its next failure is acted on right away. */
  async passed(check: string): Promise<void> {
    this.streaks.delete(check);
    await this.options.restarts.clear(check);
  }

  /** A streak this process has not seen: a `restart-outpost` one goes on from the attempts persisted in this boot. */
  private resumed(check: string, remediation: Remediation, now: number): { attempts: number; nextAtMs: number } {
    const last = remediation.action === 'restart-outpost' ? this.options.restarts.last(check) : undefined;
    if (last === undefined) return { attempts: 0, nextAtMs: now };
    return { attempts: last.attempts, nextAtMs: last.monotonicMs + this.delayMs(last.attempts) };
  }

  private run<A extends Remediation>(remediation: A, reason: string, about: Attempt): Promise<ActionResult> {
    const handler = this.handlers[remediation.action] as (action: A, reason: string, about: Attempt) => Promise<ActionResult>;
    return handler(remediation, reason, about);
  }

  /** The wait after attempt `attempts` (from 1): min doubling up to max, plus jitter within both. */
  private delayMs(attempts: number): number {
    const minMs = this.options.backoffMinSec * 1000;
    const maxMs = this.options.backoffMaxSec * 1000;
    const base = Math.min(minMs * 2 ** (attempts - 1), maxMs);
    const jitter = base * maxJitter * (this.options.random ?? Math.random)();
    return Math.round(Math.min(base + jitter, maxMs));
  }
}

async function outcomeOf(action: () => Promise<unknown>): Promise<ActionResult> {
  try {
    await action();
    return { outcome: 'done' };
  } catch (err) {
    return { outcome: 'failed', detail: err instanceof Error ? err.message : String(err) };
  }
}
