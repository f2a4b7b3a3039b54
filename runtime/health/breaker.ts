/**
 * The reboot circuit breaker: at most `maxReboots` remediation reboots within `windowSec`, then
 * none until the window has passed or an operator resets it, so a check that a reboot does not fix
 * cannot turn the gateway into a reboot loop (Mender's datastore counts loops across boots the
 * same way, STYLE 3 and 14).
 *
 * Invariants:
 * - A reboot is recorded, fsync'd, before it is asked for (write-ahead): a power cut or a kill
 *   between the two counts one reboot too many, never one too few.
 * - The records live in a collection of their own, read with loose schemas, so releases before and
 *   after this one read and rewrite them (keeping fields they do not know).
 * - Gateways have no RTC and NTP moves the wall clock by months, so a record's age is measured on
 *   CLOCK_MONOTONIC within the boot that wrote it. For an earlier boot, this boot's uptime is a
 *   lower bound (the monotonic clock started at this boot, after the record); the wall-clock
 *   difference is taken instead only when it is larger and the clock is not behind the record.
 *   A wall clock set back therefore never expires a record; one set forward past the window does.
 * - The list stays bounded: a write keeps only the records still inside the window, and at most
 *   `maxReboots` records are read (the newest: they decide alone whether the breaker is open), so
 *   a list another release or config left longer is cut at the next write.
 */
import { z } from 'zod';
import type { Clock } from '../platform/index.js';
import type { Collection, Store } from '../store/index.js';

const recordSchema = z.looseObject({
  /** The boot that asked for the reboot (the one it ended). */
  bootId: z.string(),
  /** ISO wall time, for reports and as an upper bound of the age across boots. */
  wallTime: z.string(),
  /** CLOCK_MONOTONIC ms in that boot. */
  monotonicMs: z.number().nonnegative(),
  reason: z.string(),
});
const listSchema = z.looseObject({ records: z.array(recordSchema) });
type RebootRecord = z.infer<typeof recordSchema>;
const collectionName = 'health-reboots';

const listKey = 'reboots';

/** Options of {@link RebootBreaker.open}. */
export interface RebootBreakerOptions {
  maxReboots: number;
  windowSec: number;
  /** This boot's id (platform `kernelBootId`). */
  bootId: string;
  clock: Clock;
}

/** What the breaker would decide now, for status and events. */
export interface RebootBreakerState {
  open: boolean;
  /** Remediation reboots inside the window. */
  recent: number;
  maxReboots: number;
  windowSec: number;
  /** Why it is open. */
  reason?: string;
}

/** Allows remediation reboots until `maxReboots` were asked for within `windowSec`; persisted across boots. */
export class RebootBreaker {
  /** Serializes allow() and reset(): two checks asking at once must not both pass the last free slot. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: Store,
    private readonly reboots: Collection<z.infer<typeof listSchema>>,
    private readonly options: RebootBreakerOptions,
    /** What is on disk, in the order written. */
    private records: RebootRecord[],
    /** The stored records could not be read: open, fail safe, until an operator resets. */
    private unreadable: boolean,
  ) {}

  /** Reads the records of earlier reboots from `store`. */
  static async open(store: Store, options: RebootBreakerOptions): Promise<RebootBreaker> {
    // Read loosely: a strict read of a list another release wrote in another shape throws
    // STORE_CORRUPT, and that exit status is one systemd does not restart.
    const stored = await store.collection(collectionName, z.unknown()).get(listKey);
    const parsed = stored === undefined ? undefined : listSchema.safeParse(stored);
    const records = parsed?.success === true ? parsed.data.records : [];
    return new RebootBreaker(store, store.collection(collectionName, listSchema), options, records.slice(Math.max(0, records.length - options.maxReboots)), parsed?.success === false);
  }

  state(): RebootBreakerState {
    const { maxReboots, windowSec } = this.options;
    const recent = this.inWindow();
    const base = { recent: recent.length, maxReboots, windowSec };
    if (maxReboots === 0) return { ...base, open: true, reason: 'health.rebootBreaker.maxReboots is 0: outpost never reboots to remediate a check' };
    if (this.unreadable) return { ...base, open: true, reason: 'the stored record of remediation reboots cannot be read (another release wrote it?): no more until an operator resets the breaker' };
    if (recent.length < maxReboots) return { ...base, open: false };
    const last = recent[recent.length - 1];
    return {
      ...base,
      open: true,
      reason: `${recent.length} remediation reboots within ${windowSec} s (at most ${maxReboots}), the last at ${last?.wallTime} for: ${last?.reason}; no more until the window has passed or an operator resets the breaker`,
    };
  }

  /** Records a reboot about to be asked for (fsync'd) when the breaker is closed; returns false, recording nothing, when open. */
  async allow(reason: string): Promise<boolean> {
    return this.serialized(async () => {
      if (this.state().open) return false;
      const { bootId, clock } = this.options;
      const records = [...this.inWindow(), { bootId, wallTime: clock.now().toISOString(), monotonicMs: clock.monotonicMs(), reason }];
      await this.store.batch().put(this.reboots, listKey, { records }).commit();
      this.records = records;
      return true;
    });
  }

  /** Operator reset (clears the records). */
  async reset(): Promise<void> {
    await this.serialized(async () => {
      await this.store.batch().del(this.reboots, listKey).commit();
      this.records = [];
      this.unreadable = false;
    });
  }

  private serialized<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(step);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private inWindow(): RebootRecord[] {
    const windowMs = this.options.windowSec * 1000;
    return this.records.filter((record) => this.ageMs(record) < windowMs);
  }

  private ageMs(record: RebootRecord): number {
    const { bootId, clock } = this.options;
    const nowMonotonic = clock.monotonicMs();
    if (record.bootId === bootId) return Math.max(0, nowMonotonic - record.monotonicMs);
    const wallMs = clock.now().getTime() - Date.parse(record.wallTime);
    // NaN (an unreadable time) fails the comparison and leaves the uptime bound.
    return wallMs > nowMonotonic ? wallMs : nowMonotonic;
  }
}
