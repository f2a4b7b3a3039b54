/**
 * The `restart-outpost` attempts of each failing check, persisted: the restart ends the process
 * that kept the check's backoff, and without them every new process would restart outpost again
 * "right away", a loop with no backoff and no end (other actions run inside the process, whose
 * memory keeps their backoff; reboots have the breaker).
 *
 * Invariants:
 * - An attempt is recorded, fsync'd, before the restart is asked for (write-ahead): a kill between
 *   the two counts one attempt too many, never one too few.
 * - Gateways have no RTC and NTP moves the wall clock by months, so an attempt is placed on
 *   CLOCK_MONOTONIC, which runs on across process restarts within one boot. An attempt of another
 *   boot, or one the monotonic clock has not reached yet (a boot id that could not be read, the
 *   same fallback in both boots), is not resumed: a reboot starts the backoff over.
 * - A collection of its own, read with a loose schema: releases that do not know it leave it alone,
 *   later ones may add fields.
 */
import { z } from 'zod';
import type { Clock } from '../platform/index.js';
import type { Collection, Store } from '../store/index.js';

const attemptSchema = z.looseObject({
  /** Attempts in the check's failing streak so far, the recorded one included. */
  attempts: z.number().int().positive(),
  /** The boot the last attempt was made in (platform `kernelBootId`). */
  bootId: z.string(),
  /** CLOCK_MONOTONIC ms of the last attempt, in that boot. */
  monotonicMs: z.number().nonnegative(),
});
type StoredAttempt = z.infer<typeof attemptSchema>;
const collectionName = 'health-restart-attempts';

/** Options of {@link RestartAttempts.open}. */
export interface RestartAttemptsOptions {
  /** This boot's id (platform `kernelBootId`). */
  bootId: string;
  clock: Clock;
}

/** The persisted `restart-outpost` attempts, keyed by check name. */
export class RestartAttempts {
  private constructor(
    private readonly store: Store,
    private readonly collection: Collection<StoredAttempt>,
    private readonly options: RestartAttemptsOptions,
    /** What is on disk, from any boot: a pass deletes only what is there. */
    private readonly stored: Map<string, StoredAttempt>,
  ) {}

  /** Reads the attempts earlier processes recorded in `store`. */
  static async open(store: Store, options: RestartAttemptsOptions): Promise<RestartAttempts> {
    // Read loosely: an entry another release wrote in another shape is dropped, not fatal (a
    // strict read throws STORE_CORRUPT, whose exit status systemd does not restart). It is only a
    // backoff hint; losing it costs one early attempt.
    const raw = await store.collection(collectionName, z.unknown()).entries();
    const stored = new Map<string, StoredAttempt>();
    for (const [check, value] of raw) {
      const parsed = attemptSchema.safeParse(value);
      if (parsed.success) stored.set(check, parsed.data);
    }
    return new RestartAttempts(store, store.collection(collectionName, attemptSchema), options, stored);
  }

  /** The check's last attempt when it was made in this boot, else undefined. */
  last(check: string): { attempts: number; monotonicMs: number } | undefined {
    const stored = this.stored.get(check);
    if (stored === undefined || stored.bootId !== this.options.bootId || stored.monotonicMs > this.options.clock.monotonicMs()) return undefined;
    return { attempts: stored.attempts, monotonicMs: stored.monotonicMs };
  }

  /** Records attempt `attempts` of `check` as made now; resolves once it is on disk. */
  async record(check: string, attempts: number): Promise<void> {
    const attempt = { attempts, bootId: this.options.bootId, monotonicMs: this.options.clock.monotonicMs() };
    await this.store.batch().put(this.collection, check, attempt).commit();
    this.stored.set(check, attempt);
  }

  /** The check passed: its next failure starts over. Writes only when something is stored. */
  async clear(check: string): Promise<void> {
    if (!this.stored.has(check)) return;
    await this.store.batch().del(this.collection, check).commit();
    this.stored.delete(check);
  }
}
