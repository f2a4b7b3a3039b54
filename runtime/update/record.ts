/**
 * The persisted update record: one versioned document (STYLE 3) holding the state name, the
 * release being installed, and what each state needs to resume after `kill -9` or a power cut.
 *
 * /var/lib/outpost is shared by every deployment: while a newer release is on trial the older
 * outpost may have to read what the newer one wrote (a rollback). So the record is a loose object:
 * fields this release does not know are kept as they are (and written back unchanged); a newer
 * release may only add fields within `schema: 1`. Strict parsing stays for operator input.
 */
import { z } from 'zod';

/** Every state of the update state machine (transitions.ts says how they connect). */
export const updateStates = ['idle', 'downloading', 'downloaded', 'applying', 'deployed', 'rebooting', 'probation', 'committed', 'rollingBack', 'rolledBack'] as const;
/** A state name. */
export type UpdateState = (typeof updateStates)[number];

const commit = z.string().regex(/^[0-9a-f]{64}$/);

/** What is being installed, as the signed metadata described it. */
export const releaseSchema = z.looseObject({
  target: z.string(),
  version: z.number().int().positive(),
  commit,
  ref: z.string(),
  arch: z.string(),
  hardware: z.string(),
  /** A static delta from the booted commit, or null for the full-pull fallback. */
  delta: z
    // `path`: where the repository serves it below targets/, when not its name (consistent snapshots).
    .looseObject({ target: z.string(), from: commit, length: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/), path: z.string().optional() })
    .nullable(),
  /** Set when installing from an offline bundle: files come from here, not the network. */
  bundleDir: z.string().optional(),
});
/** A release being installed. */
export type Release = z.infer<typeof releaseSchema>;

/** Download/apply progress shown by `outpost update status` and on the state topic. */
export const progressSchema = z.object({ phase: z.string(), bytes: z.number(), total: z.number(), rateBps: z.number() });
/** Progress of the current step. */
export type Progress = z.infer<typeof progressSchema>;

/** The outcome of the last finished attempt, kept for reporting. */
export const outcomeSchema = z.looseObject({
  result: z.enum(['committed', 'rolledBack', 'failed']),
  version: z.number().int(),
  commit,
  reason: z.string().nullable(),
  /** A failed attempt's stable error code (docs/architecture.md), for dashboards and alerts. */
  code: z.string().optional(),
  at: z.string(),
});
/** How the last update ended. */
export type Outcome = z.infer<typeof outcomeSchema>;

/** The whole record, schema version 1. */
export const updateRecordSchema = z.looseObject({
  schema: z.literal(1),
  state: z.enum(updateStates),
  release: releaseSchema.nullable(),
  /** The commit that was running when the update began: the rollback target. */
  previousCommit: commit.nullable(),
  /** Boot id when the reboot into the new deployment was requested. */
  rebootFromBootId: z.string().nullable(),
  /** Boot id in which probation started; a different one means the trial boot was reset. */
  probationBootId: z.string().nullable(),
  probationStartedAt: z.string().nullable(),
  /** Why the attempt is rolling back / failed. */
  reason: z.string().nullable(),
  /** Saves while in the current state; a loop shows up as a climbing count (STYLE 3). */
  saves: z.number().int().nonnegative(),
  /** Increases on every save, so two records can be ordered. */
  counter: z.number().int().nonnegative(),
  progress: progressSchema.nullable(),
  last: outcomeSchema.nullable(),
  updatedAt: z.string(),
});
/** The persisted record. */
export type UpdateRecord = z.infer<typeof updateRecordSchema>;

/** The record of a device that has never updated. */
export function initialRecord(now: Date): UpdateRecord {
  return {
    schema: 1,
    state: 'idle',
    release: null,
    previousCommit: null,
    rebootFromBootId: null,
    probationBootId: null,
    probationStartedAt: null,
    reason: null,
    saves: 0,
    counter: 0,
    progress: null,
    last: null,
    updatedAt: now.toISOString(),
  };
}
