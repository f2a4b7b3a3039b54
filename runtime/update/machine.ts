/**
 * Runs the update state machine with write-ahead persistence.
 *
 * Invariants:
 * - The next state is saved (one fsync'd batch, with any bookkeeping the step produced) before
 *   its step runs, so `kill -9` at any line resumes in a state whose step is safe to re-run.
 *   Every step is therefore idempotent: it checks what is already done before doing it.
 * - A transient error (network down, disk busy) leaves the state as it is; the caller retries
 *   later. A permanent error in a forward state becomes the `failed` event; in rollback states it
 *   is logged and the machine pauses rather than giving up on getting back to a good system.
 * - Saving the same state more than `maxSaves` times in a row is a loop: the `loop` event.
 *   Resuming a record this process did not save counts as a save: a step that takes the process
 *   down with it (kill -9, OOM, a fatal throw) never returns to be counted otherwise. So does
 *   running a step again after it threw: an error that never clears is a loop too.
 */
import { z } from 'zod';
import { isOutpostError, OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import { monotonicMs } from '../platform/index.js';
import type { Collection, Store } from '../store/index.js';
import { backoffMs, defaultRetryPolicy, deferralSchema, waitLeftMs, type Deferral, type DeferredWait, type RetryPolicy } from './deferral.js';
import { initialRecord, updateRecordSchema, type Release, type UpdateRecord, type UpdateState } from './record.js';
import { updateMessageIds } from './message-ids.js';
import { allows, nextState, type UpdateEvent } from './transitions.js';

/** What a step returns: the event, changes to the record, and bookkeeping saved with it. */
export interface StepResult {
  event: UpdateEvent;
  patch?: Partial<Omit<UpdateRecord, 'state' | 'saves' | 'counter' | 'schema'>>;
  /** Never offer this commit again (a failed trial). */
  failedCommit?: { commit: string; reason: string };
  /** The bootloader ended this commit's trial with no evidence against it (deferral.ts); `bootId`: this boot. */
  deferredCommit?: { commit: string; reason: string; bootId: string };
  /** The release now committed: its version is the anti-rollback floor. */
  installed?: { version: number; commit: string };
  /** Stop after saving (e.g. a reboot was requested); the next run resumes from here. */
  pause?: boolean;
}

/** One step per non-idle state; the compiler demands every state has one (STYLE 4). */
export type Steps = { readonly [S in Exclude<UpdateState, 'idle'>]: (record: UpdateRecord) => Promise<StepResult> };

/** Loose: a newer outpost may add fields (record.ts). */
const failedCommitSchema = z.looseObject({ reason: z.string(), at: z.string() });
const recordCollection = 'update';
const recordKey = 'record';

/** The machine's persistent view: the record, failed commits, and the installed version floor. */
export class UpdateStore {
  readonly records: Collection<UpdateRecord>;
  readonly failed: Collection<z.infer<typeof failedCommitSchema>>;
  readonly installed: Collection<number>;
  /** The committed release's commit: whether it is what runs (an operator may have rolled back from it). */
  readonly installedCommits: Collection<string>;
  readonly deferred: Collection<Deferral>;
  /** Releases an operator cancelled: automatic checks pass them over, an explicit apply does not. */
  readonly cancelled: Collection<z.infer<typeof failedCommitSchema>>;

  constructor(
    readonly store: Store,
    readonly retry: RetryPolicy = defaultRetryPolicy,
    private readonly clockMs: () => number = monotonicMs,
  ) {
    this.records = store.collection(recordCollection, updateRecordSchema);
    this.failed = store.collection('update-failed', failedCommitSchema);
    this.deferred = store.collection('update-deferred', deferralSchema);
    this.installed = store.collection('update-installed', z.number().int().nonnegative());
    // Its own collection: a previous release reads 'update-installed' with a number schema.
    this.installedCommits = store.collection('update-installed-commit', z.string());
    this.cancelled = store.collection('update-cancelled', failedCommitSchema);
  }

  async record(now: Date): Promise<UpdateRecord> {
    return (await this.records.get(recordKey)) ?? initialRecord(now);
  }

  async installedVersion(): Promise<number> {
    return (await this.installed.get('version')) ?? 0;
  }

  /** Null on the factory image, and where a release before this field committed the last update. */
  async installedCommit(): Promise<string | null> {
    return (await this.installedCommits.get('commit')) ?? null;
  }

  async hasFailed(commit: string): Promise<boolean> {
    return (await this.failed.get(commit)) !== undefined;
  }

  async wasCancelled(commit: string): Promise<boolean> {
    return (await this.cancelled.get(commit)) !== undefined;
  }

  /** Null when `commit` may be offered; else why not yet and for how long (a deferred release in its backoff). */
  async deferredWait(commit: string, bootId: string): Promise<DeferredWait | null> {
    const deferral = await this.deferred.get(commit);
    const leftMs = deferral ? waitLeftMs(deferral, bootId, this.clockMs(), this.retry) : 0;
    if (!deferral || leftMs <= 0) return null;
    return { leftMs, reason: `offered again in ${Math.ceil(leftMs / 60_000)} min (trial ${deferral.attempts} of ${this.retry.maxAttempts} ended without a hang or a failed check)` };
  }

  /**
   * Turns a step's deferred commit into what to persist: a deferral with its backoff, or, at the
   * last allowed attempt, a failed commit. The record's reason says which.
   */
  async settleDeferral(result: StepResult, now: Date): Promise<{ result: StepResult; deferral?: { commit: string; value: Deferral } }> {
    const { deferredCommit, ...rest } = result;
    if (!deferredCommit) return { result };
    const { commit, bootId } = deferredCommit;
    const attempts = ((await this.deferred.get(commit))?.attempts ?? 0) + 1;
    const { maxAttempts } = this.retry;
    if (attempts >= maxAttempts) {
      const reason = `${deferredCommit.reason}; ${attempts} of ${maxAttempts} trials ended so: not offered again`;
      return { result: { ...rest, patch: { ...rest.patch, reason }, failedCommit: { commit, reason } } };
    }
    const waitMin = Math.ceil(backoffMs(attempts, this.retry) / 60_000);
    const reason = `${deferredCommit.reason}; no hang and no failed check was seen (power loss?): offered again in ${waitMin} min (trial ${attempts} of ${maxAttempts})`;
    const value = { attempts, reason, at: now.toISOString(), bootId, sinceMs: this.clockMs() };
    return { result: { ...rest, patch: { ...rest.patch, reason } }, deferral: { commit, value } };
  }

  async save(record: UpdateRecord, extra: Pick<StepResult, 'failedCommit' | 'installed'> & { deferral?: { commit: string; value: Deferral }; cancelledCommit?: { commit: string; reason: string } } = {}, now = new Date()): Promise<void> {
    const batch = this.store.batch().put(this.records, recordKey, record);
    if (extra.deferral) batch.put(this.deferred, extra.deferral.commit, extra.deferral.value);
    if (extra.cancelledCommit) batch.put(this.cancelled, extra.cancelledCommit.commit, { reason: extra.cancelledCommit.reason, at: now.toISOString() });
    if (extra.failedCommit) batch.put(this.failed, extra.failedCommit.commit, { reason: extra.failedCommit.reason, at: now.toISOString() });
    if (extra.installed) batch.put(this.installed, 'version', extra.installed.version).put(this.installedCommits, 'commit', extra.installed.commit);
    await batch.commit();
  }
}

/**
 * Whether the update record shows an update under way, in which case a release may be on trial
 * and be rolled back to the one before. An unreadable record counts as under way: holding a store
 * step costs nothing, running it too early can strand the release before.
 */
export async function updateUnderWay(store: Store): Promise<boolean> {
  // Only the state, loosely: the record of an older format must not look unreadable to newer code.
  const record = await store.collection(recordCollection, z.looseObject({ state: z.string() })).get(recordKey).catch(() => null);
  return record === null || (record !== undefined && record.state !== 'idle');
}

/** Why the update in `record` can no longer be cancelled, or null while it can. */
export function cancelRefusal(record: UpdateRecord): OutpostError | null {
  if (!record.release || allows(record.state, 'cancelled')) return null;
  return new OutpostError('UPDATE_TOO_LATE', `release ${record.release.version} is past its download (${record.state}): it can no longer be cancelled; once it settles, \`outpost update rollback\` goes back`);
}

/** Options of {@link UpdateMachine}. */
export interface UpdateMachineOptions {
  store: UpdateStore;
  steps: Steps;
  log: Logger;
  now?: () => Date;
  maxSaves?: number;
  /** Called after every save, e.g. to publish progress on the state topic. */
  onChange?: (record: UpdateRecord) => void;
}

/** What a permanent step error means per state; absent = keep the state and retry later. Exported for the table test. */
export const errorEvents: Partial<Record<Exclude<UpdateState, 'idle'>, UpdateEvent>> = {
  downloading: 'failed',
  downloaded: 'failed',
  applying: 'failed',
  probation: 'unhealthy',
};

/** The state machine runner. */
export class UpdateMachine {
  private readonly now: () => Date;
  private readonly maxSaves: number;
  /** `counter` of the record this machine saved last; any other record is a resume. */
  private savedCounter: number | undefined;

  constructor(private readonly options: UpdateMachineOptions) {
    this.now = options.now ?? (() => new Date());
    this.maxSaves = options.maxSaves ?? 20;
  }

  /** The current record. */
  record(): Promise<UpdateRecord> {
    return this.options.store.record(this.now());
  }

  /** Starts installing `release` from idle; persisted before any work. */
  async begin(release: Release, previousCommit: string | null): Promise<void> {
    const record = await this.record();
    const next = this.advance(record, { event: 'begin', patch: { release, previousCommit, reason: null, progress: null, rebootFromBootId: null, probationBootId: null, probationStartedAt: null } });
    await this.persist(next, {});
    this.logTransition(record, 'begin', next);
  }

  /**
   * Ends an update that has not reached its deploy: idle again, the outcome `failed` with code
   * UPDATE_CANCELLED (a result older releases read), the release passed over by automatic checks.
   * Past `downloaded` the system is being changed, and only the trial's verdict or a rollback ends it.
   */
  async cancel(reason: string): Promise<UpdateRecord | null> {
    const record = await this.record();
    const release = record.release;
    if (!release) return null;
    const refusal = cancelRefusal(record);
    if (refusal) throw refusal;
    const last = { result: 'failed' as const, version: release.version, commit: release.commit, reason, code: 'UPDATE_CANCELLED', at: this.now().toISOString() };
    const next = this.advance(record, { event: 'cancelled', patch: { release: null, progress: null, reason: null, last } });
    await this.persist(next, { cancelledCommit: { commit: release.commit, reason } });
    this.logTransition(record, 'cancelled', next);
    return next;
  }

  /**
   * Starts going back from idle to the deployment kept for rollback, through the rollback states
   * a failed trial uses; `leaving` is the running release, not offered again.
   */
  async rollBack(leaving: Release, reason: string): Promise<void> {
    const record = await this.record();
    const next = this.advance(record, { event: 'rollbackRequested', patch: { release: leaving, previousCommit: null, reason, progress: null, rebootFromBootId: null, probationBootId: null, probationStartedAt: null } });
    await this.persist(next, { failedCommit: { commit: leaving.commit, reason } });
    this.logTransition(record, 'rollbackRequested', next);
  }

  /** Records progress without a transition (not fsync-critical, but cheap enough at 1/s). */
  async progress(progress: UpdateRecord['progress']): Promise<void> {
    const record = await this.record();
    await this.persist({ ...record, progress, updatedAt: this.now().toISOString() }, {});
  }

  /**
   * Runs steps until idle or a step pauses. Transient errors propagate; the state is kept.
   * `holdBefore`: return before running the step of a record it matches (a cancel is waiting);
   * `beforeStep`: runs before each step (e.g. fresh metadata for the installer's check).
   */
  async run(hooks: { holdBefore?: (record: UpdateRecord) => boolean; beforeStep?: (record: UpdateRecord) => Promise<void> } = {}): Promise<UpdateRecord> {
    for (;;) {
      const record = await this.record();
      if (record.state === 'idle' || hooks.holdBefore?.(record) === true) return record;
      if (record.counter !== this.savedCounter) {
        // Write-ahead, like every transition: if this step kills the process again, the count stays.
        const next = this.advance(record, null);
        await this.persist(next, this.loopFailure(record, next));
        if (next.state !== record.state) this.logTransition(record, 'loop', next);
        continue;
      }
      // Also after a restart: says where a resumed update picks up.
      this.options.log.info('update step', { state: record.state, version: record.release?.version });
      await hooks.beforeStep?.(record);
      const { result, deferral } = await this.options.store.settleDeferral(await this.runStep(record), this.now());
      const next = this.advance(record, result);
      await this.persist(next, { ...result, ...(deferral ? { deferral } : {}), ...this.loopFailure(record, next) });
      this.logTransition(record, result.event, next);
      if (result.pause) return next;
    }
  }

  private logTransition(from: UpdateRecord, event: UpdateEvent, to: UpdateRecord): void {
    const { log } = this.options;
    log.info('update state', { from: from.state, event, to: to.state, version: to.release?.version, reason: to.reason });
    // The outcomes once each, with their MESSAGE_ID, for journalctl and alerts.
    if (event === 'begin' && to.release) {
      const { version, commit, delta } = to.release;
      log.info(`update to release ${version} started`, { messageId: updateMessageIds.started, version, commit, delta: delta !== null, bundle: to.release.bundleDir !== undefined });
    } else if (to.state === 'idle' && to.last) {
      const { result, version, commit, reason, code } = to.last;
      // Bounded: the journal entry (one datagram, logs/journal.ts) must not outgrow the socket's limit.
      const fields = { messageId: updateMessageIds[result], version, commit, ...(reason === null ? {} : { reason: reason.slice(0, 1000) }), ...(code === undefined ? {} : { code }) };
      if (result === 'committed') log.info(`release ${version} committed`, fields);
      else log.warn(`release ${version} ${result === 'rolledBack' ? 'rolled back' : 'not installed'}`, fields);
    }
  }

  private async runStep(record: UpdateRecord): Promise<StepResult> {
    const state = record.state as Exclude<UpdateState, 'idle'>;
    try {
      return await this.options.steps[state](record);
    } catch (err) {
      const onError = errorEvents[state];
      if ((isOutpostError(err) && err.transient) || onError === undefined) {
        // Kept in place and retried by the caller; in rollback states this is the "log, never
        // fatal" rule: the machine keeps trying to get back to a good system.
        this.options.log.error('update step failed; will retry', { state, err });
        // The next run is a retry: counted like a resume (Mender counts every load), so an error
        // that never clears reaches the loop event instead of being retried forever.
        this.savedCounter = undefined;
        throw err;
      }
      const reason = err instanceof Error ? err.message : String(err);
      if (onError !== 'failed' || !record.release) return { event: onError, patch: { reason } };
      const { version, commit } = record.release;
      const last = { result: 'failed' as const, version, commit, reason, ...(isOutpostError(err) ? { code: err.code } : {}), at: this.now().toISOString() };
      return { event: onError, patch: { reason, last, release: null, progress: null } };
    }
  }

  /** The record after `result`, or after a resume (null: the same state runs again). */
  /**
   * A release whose update loops (a step that crashes or retries outpost without end, a trial
   * that never settles) is not offered again: a loop says more against it than power loss does.
   */
  private loopFailure(from: UpdateRecord, to: UpdateRecord): Pick<StepResult, 'failedCommit'> {
    const looped = to.state !== from.state && allows(from.state, 'loop') && nextState(from.state, 'loop') === to.state && to.saves === 0 && from.saves >= this.maxSaves;
    return looped && from.release ? { failedCommit: { commit: from.release.commit, reason: to.reason ?? `stuck in ${from.state}` } } : {};
  }

  private advance(record: UpdateRecord, result: StepResult | null): UpdateRecord {
    let event = result?.event;
    let to = event ? nextState(record.state, event) : record.state;
    const saves = to === record.state ? record.saves + 1 : 0;
    if (saves > this.maxSaves && allows(record.state, 'loop')) {
      event = 'loop';
      to = nextState(record.state, event);
    }
    const loopReason = event === 'loop' ? `stuck in ${record.state} after ${saves} attempts` : undefined;
    return {
      ...record,
      ...result?.patch,
      ...(loopReason ? { reason: record.reason ?? loopReason } : {}),
      state: to,
      saves: to === record.state ? saves : 0,
      counter: record.counter + 1,
      updatedAt: this.now().toISOString(),
    };
  }

  private async persist(record: UpdateRecord, extra: Parameters<UpdateStore['save']>[1]): Promise<void> {
    await this.options.store.save(record, extra, this.now());
    this.savedCounter = record.counter;
    this.options.onChange?.(record);
  }
}
