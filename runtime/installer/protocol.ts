/**
 * The installer's wire contract: one JSON request per connection on its AF_UNIX socket, one JSON
 * answer back, each a single line. The request set is closed and typed: the agent can ask for
 * the OSTree and bootloader operations the update steps perform, nothing else (no paths outside
 * its state dir, no refs outside `outpost/`, no shell).
 */
import { z } from 'zod';
import { unitNameSchema } from '../config/index.js';
import { errorCodes, type ErrorCode } from '../errors.js';

/**
 * Longest request or answer line. The largest is an `access.set` whose entries each carry their
 * grant's envelope (a few KiB each), as after the agent's restart.
 */
export const maxLineBytes = 1024 * 1024;

const commit = z.string().regex(/^[0-9a-f]{64}$/, 'must be a 64-hex-digit OSTree commit');
const bootVersion = z.union([z.literal(0), z.literal(1)]);

const principalName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a local user name');
const accessEntrySchema = z.strictObject({
  id: z.string().min(1).max(128),
  principal: principalName,
  publicKey: z.string().min(1).max(8192),
  from: z.string().min(1).max(1024).optional(),
  expiresAt: z.iso.datetime(),
  // Checked by the installer's access gate, which says what is wrong with it.
  proof: z.unknown().optional(),
});

/** Every request the installer answers, by `op`. */
export const installerRequestSchema = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('deployments') }),
  z.strictObject({ op: z.literal('bootedCommit') }),
  z.strictObject({ op: z.literal('hasCommit'), commit }),
  z.strictObject({ op: z.literal('verifyCommit'), commit, fsck: z.boolean() }),
  z.strictObject({ op: z.literal('applyStaticDelta'), file: z.string().min(1).max(4096), expectFrom: commit.optional(), expectCommit: commit.optional() }),
  z.strictObject({ op: z.literal('pull'), url: z.string().min(1).max(4096), refOrCommit: commit }),
  z.strictObject({ op: z.literal('deploy'), commit }),
  z.strictObject({ op: z.literal('undeploy'), index: z.number().int().min(0).max(64) }),
  z.strictObject({ op: z.literal('rollback') }),
  z.strictObject({ op: z.literal('cancelPending') }),
  z.strictObject({ op: z.literal('cleanup') }),
  z.strictObject({ op: z.literal('refUpdate'), ref: z.string().regex(/^outpost\/[A-Za-z0-9._/-]{1,100}$/, 'must be a ref below outpost/'), commit: commit.nullable() }),
  z.strictObject({ op: z.literal('flushBoot') }),
  z.strictObject({ op: z.literal('bootVersion') }),
  z.strictObject({ op: z.literal('boot.atStart') }),
  z.strictObject({ op: z.literal('boot.id') }),
  z.strictObject({ op: z.literal('boot.markTrial'), commit, bootVersion }),
  z.strictObject({ op: z.literal('boot.markGood') }),
  z.strictObject({ op: z.literal('boot.trialState') }),
  z.strictObject({ op: z.literal('boot.resetCause') }),
  z.strictObject({ op: z.literal('boot.bootedCommit') }),
  z.strictObject({ op: z.literal('boot.reboot'), reason: z.string().max(1000) }),
  // The `restart-service` command; the installer allows only its own config's commands.restartUnits.
  z.strictObject({ op: z.literal('unit.restart'), unit: unitNameSchema }),
  // Just-in-time access (access/host.ts): the whole set of granted keys, re-checked and rendered
  // by the installer; ending a principal's processes; listing its sessions. Principals are the
  // installer's own config's commands.access.principals.
  z.strictObject({ op: z.literal('access.set'), entries: z.array(accessEntrySchema).max(256) }),
  z.strictObject({ op: z.literal('access.endSessions'), principal: principalName }),
  z.strictObject({ op: z.literal('access.sessions') }),
]);

export type InstallerRequest = z.infer<typeof installerRequestSchema>;
export type InstallerOp = InstallerRequest['op'];

/**
 * How each op runs: a `query` answers at once; a `change` waits for the changes before it; a
 * `long` change runs ostree for up to its 10-minute exec limit and flushes /boot, so its client
 * waits longer for the answer.
 */
export const opKinds = {
  deployments: 'query',
  bootedCommit: 'query',
  hasCommit: 'query',
  verifyCommit: 'long',
  applyStaticDelta: 'long',
  pull: 'long',
  deploy: 'long',
  undeploy: 'long',
  rollback: 'long',
  cancelPending: 'long',
  cleanup: 'long',
  refUpdate: 'change',
  flushBoot: 'change',
  bootVersion: 'query',
  'boot.atStart': 'change',
  'boot.id': 'query',
  'boot.markTrial': 'change',
  'boot.markGood': 'change',
  'boot.trialState': 'query',
  'boot.resetCause': 'query',
  'boot.bootedCommit': 'query',
  'boot.reboot': 'change',
  'unit.restart': 'change',
  'access.set': 'change',
  'access.endSessions': 'change',
  'access.sessions': 'query',
} as const satisfies { [K in InstallerOp]: 'query' | 'change' | 'long' };

const deploymentSchema = z.strictObject({
  index: z.number().int(),
  osname: z.string(),
  commit: z.string(),
  serial: z.number().int(),
  booted: z.boolean(),
  current: z.boolean(),
  pending: z.boolean(),
  rollback: z.boolean(),
  isDefault: z.boolean(),
  staged: z.boolean(),
  pinned: z.boolean(),
  version: z.string().nullable(),
  origin: z.string().nullable(),
});

/** What each op answers with: the client checks it as strictly as the server checks requests. */
export const installerResultSchemas = {
  deployments: z.array(deploymentSchema),
  bootedCommit: commit.nullable(),
  hasCommit: z.boolean(),
  verifyCommit: z.null(),
  applyStaticDelta: z.null(),
  pull: z.string(),
  deploy: deploymentSchema,
  undeploy: z.null(),
  rollback: deploymentSchema,
  cancelPending: z.number().int(),
  cleanup: z.null(),
  refUpdate: z.null(),
  flushBoot: z.strictObject({ frozen: z.boolean(), skipped: z.string().optional() }),
  bootVersion,
  'boot.atStart': z.null(),
  'boot.id': z.string(),
  'boot.markTrial': z.null(),
  'boot.markGood': z.null(),
  'boot.trialState': z.strictObject({ armed: z.boolean(), remaining: z.number().int().nullable(), bootsUsed: z.number().int().nullable() }),
  'boot.resetCause': z.enum(['watchdog', 'unknown']),
  'boot.bootedCommit': z.string().nullable(),
  'boot.reboot': z.null(),
  'unit.restart': z.null(),
  'access.set': z.strictObject({ refused: z.array(z.strictObject({ id: z.string(), reason: z.string() })).max(256) }),
  'access.endSessions': z.number().int().min(0),
  'access.sessions': z.array(z.strictObject({ principal: z.string(), id: z.string(), pid: z.number().int(), tty: z.string().nullable() })).max(1024),
} as const satisfies { [K in InstallerOp]: z.ZodType };

export type InstallerResult<K extends InstallerOp> = z.infer<(typeof installerResultSchemas)[K]>;

const errorCode = z.enum(Object.keys(errorCodes) as [ErrorCode, ...ErrorCode[]]);

/** The answer line: a result, or the OutpostError the installer ran into. */
export const installerAnswerSchema = z.union([
  z.strictObject({ ok: z.literal(true), result: z.unknown() }),
  z.strictObject({ ok: z.literal(false), error: z.strictObject({ code: errorCode, message: z.string(), transient: z.boolean() }) }),
]);

export type InstallerAnswer = z.infer<typeof installerAnswerSchema>;
