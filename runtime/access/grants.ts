/**
 * The persisted grants (store collection `access-grants`, key = the granting command's id) and
 * when each one ends, across restarts and reboots.
 *
 * Invariants:
 * - Two clocks bound a grant and the earlier wins. sshd enforces the wall-clock `expiresAt`
 *   (`expiry-time=`); outpost's own timer runs on CLOCK_MONOTONIC (`deadlineMs`, meaningful only in
 *   `bootId`), since a gateway without an RTC may start at a saved or 1970 time and jump later.
 * - Never extended. In another boot the monotonic deadline means nothing and the time the device
 *   was down is unknown, so the grant keeps only `remainingMs`: what was left at the last
 *   checkpoint minus one checkpoint interval (written ahead), so however long before the next
 *   checkpoint the power went, the stored value is never more than what truly remained. A grant
 *   shorter than one interval does not survive a reboot.
 * - A record is `active` (its key installed or being installed) or `ending` (decided to end, with
 *   its reason and event already queued; the key's removal, the sessions' end and the record's
 *   deletion still to do, redone at every start until done).
 */
import { z } from 'zod';

/** How often the remaining time of the active grants is written down for a reboot. */
export const CHECKPOINT_MS = 60_000;

/** The reverse tunnel a grant asked for. */
export const tunnelSchema = z.strictObject({
  host: z.string(),
  port: z.number().int(),
  user: z.string(),
  hostKey: z.string(),
  remotePort: z.number().int(),
});

/** One grant as stored. Loose: another release may add fields. */
export const grantRecordSchema = z.looseObject({
  state: z.enum(['active', 'ending']),
  principal: z.string(),
  /** `<type> <base64>`, as parsed (keys.ts). */
  publicKey: z.string(),
  fingerprint: z.string(),
  from: z.string().optional(),
  tunnel: tunnelSchema.optional(),
  grantedAt: z.iso.datetime(),
  /** Wall clock: sshd's `expiry-time=` and the reports. */
  expiresAt: z.iso.datetime(),
  /** The boot `deadlineMs` belongs to. */
  bootId: z.string(),
  /** CLOCK_MONOTONIC ms at which outpost ends the grant, in `bootId`. */
  deadlineMs: z.number(),
  /** What a later boot may still give the grant (see the module's invariants). */
  remainingMs: z.number().min(0),
  endReason: z.enum(['expired', 'revoked', 'failed']).optional(),
  /** The signed `grant-access` envelope: the installer adds a key only on its proof (installer/access-gate.ts). */
  proof: z.unknown().optional(),
});

export type GrantRecord = z.infer<typeof grantRecordSchema>;

/** The collection name; an older release ignores it. */
export const GRANTS_COLLECTION = 'access-grants';

/** The remaining time to store now, for a deadline `deadlineMs` on the monotonic clock at `nowMs`. */
export function checkpointRemaining(deadlineMs: number, nowMs: number): number {
  return Math.max(0, deadlineMs - nowMs - CHECKPOINT_MS);
}

/** Where a stored grant stands in this boot. */
export type Resumed = { readonly ended: true } | { readonly ended: false; readonly deadlineMs: number; readonly moved: boolean };

/**
 * The grant's deadline in the boot `bootId` at monotonic `nowMs` and wall `now`. In its own boot,
 * the stored deadline; in another, now plus the smaller of the stored remaining time and the
 * wall-clock remainder (`moved`: the caller must store the new deadline before relying on it).
 */
export function resumeGrant(record: Pick<GrantRecord, 'bootId' | 'deadlineMs' | 'remainingMs' | 'expiresAt'>, bootId: string, nowMs: number, now: Date): Resumed {
  if (record.bootId === bootId && bootId !== 'unknown') return nowMs >= record.deadlineMs ? { ended: true } : { ended: false, deadlineMs: record.deadlineMs, moved: false };
  const left = Math.min(record.remainingMs, Date.parse(record.expiresAt) - now.getTime());
  return left <= 0 ? { ended: true } : { ended: false, deadlineMs: nowMs + left, moved: true };
}
