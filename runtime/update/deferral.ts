/**
 * Releases whose trial the bootloader ended with no evidence against them: no hardware watchdog
 * reset, no trial-guard reboot, no failed check. That is what power lost during the trial boots
 * looks like, and DESIGN says it is not held against a release: such a release is offered again
 * after a backoff, a bounded number of times, and only then counts as failed.
 *
 * The backoff runs on CLOCK_MONOTONIC (gateways have no RTC and NTP jumps). That clock starts
 * again at every boot and nothing tells how long the device was off, so after a reboot (the
 * rollback's own, say) the backoff counts again from the start of the new boot.
 */
import { z } from 'zod';

/** A deferred release, persisted per commit. Loose object: another outpost release may add fields. */
export const deferralSchema = z.object({
  /** Trials of this commit that ended so. */
  attempts: z.number().int().positive(),
  reason: z.string(),
  /** Wall clock, for reports only. */
  at: z.string(),
  /** The boot in which the backoff started, and CLOCK_MONOTONIC then (ms). */
  bootId: z.string(),
  sinceMs: z.number().nonnegative(),
});
/** A deferred release. */
export type Deferral = z.infer<typeof deferralSchema>;

/** A deferred release still in its backoff: why, for the status, and how long yet. */
export interface DeferredWait {
  reason: string;
  leftMs: number;
}

/** How often and how long (config `update.deferral`). */
export interface RetryPolicy {
  /** Trials a release gets in all; the one that ends so at this count makes it failed. */
  maxAttempts: number;
  /** Wait after the first deferral; each further one waits four times longer. */
  backoffMs: number;
}

/** Three trials, then 10 and 40 minutes apart. */
export const defaultRetryPolicy: RetryPolicy = { maxAttempts: 3, backoffMs: 10 * 60_000 };

/** The backoff after `attempts` deferrals. */
export function backoffMs(attempts: number, policy: RetryPolicy): number {
  return policy.backoffMs * 4 ** Math.max(0, attempts - 1);
}

/** Milliseconds until the release may be offered again; 0 when it may be now. */
export function waitLeftMs(deferral: Deferral, bootId: string, nowMs: number, policy: RetryPolicy): number {
  const since = deferral.bootId === bootId ? deferral.sinceMs : 0;
  return Math.max(0, since + backoffMs(deferral.attempts, policy) - nowMs);
}
