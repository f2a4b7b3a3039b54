/**
 * Who may send commands: part of the device's TUF trust, not of its config.
 *
 * The signed targets metadata lists a target named {@link COMMAND_ISSUERS_TARGET} whose `custom`
 * is {@link IssuersCustom}: each issuer's ed25519 key, the command types it may send, the longest
 * validity window it may sign and whether it may address devices, groups or both; plus the key ids
 * that are revoked. So the same root keys that vouch for releases vouch for issuers, and rotating or
 * revoking an issuer is publishing new targets metadata: a new key is listed, an old one is moved to
 * `revoked` (refused as `revoked-issuer`, which tells the operator more than `unknown-issuer`).
 *
 * The document is strict, like a command's signed part: a field this device does not know may be a
 * restriction, and ignoring it would grant more than the fleet signed. Any bad entry refuses the
 * whole set, so the caller fails closed (no commands) and the operator hears of it, rather than the
 * device quietly running with part of what was signed.
 */
import { z } from 'zod';
import { COMMAND_TYPE_PATTERN, KEY_ID_PATTERN, type CommandTargetKind } from '../protocol/index.js';
import { keyIdOf, type TufKey } from '../trust/index.js';
import type { TrustedTargets } from '../update/tuf/index.js';

/** The target whose `custom` lists the command issuers. */
export const COMMAND_ISSUERS_TARGET = 'outpost/command-issuers';
/** The `schema` value of this version of the issuers document. */
export const COMMAND_ISSUERS_SCHEMA_ID = 'outpost.command-issuers/1';
/** The longest validity window an issuer may be granted: a signed command is a bearer token until it expires. */
export const MAX_ISSUER_VALIDITY_SEC = 30 * 24 * 60 * 60;

const keyId = z.string().regex(KEY_ID_PATTERN, 'must be a 64-character lower-case hex key id');
const targetKinds = ['device', 'group'] as const satisfies readonly CommandTargetKind[];

/** One issuer entry. Only ed25519 keys: commands are signed by outpostctl, which signs with nothing else. */
export const issuerEntrySchema = z
  .object({
    key: z
      .object({
        keytype: z.literal('ed25519'),
        scheme: z.literal('ed25519'),
        keyval: z.object({ public: z.string().regex(/^[0-9a-f]{64}$/, 'must be a 32-byte lower-case hex ed25519 key') }).strict(),
      })
      .strict(),
    types: z.array(z.string().regex(COMMAND_TYPE_PATTERN, 'must be a command type')).min(1).max(256),
    maxValiditySec: z.number().int().positive().max(MAX_ISSUER_VALIDITY_SEC),
    targets: z.array(z.enum(targetKinds)).min(1).optional(),
  })
  .strict();

/** `custom` of the {@link COMMAND_ISSUERS_TARGET} target. */
export const issuersCustomSchema = z
  .object({
    schema: z.literal(COMMAND_ISSUERS_SCHEMA_ID),
    issuers: z.record(keyId, issuerEntrySchema),
    revoked: z.array(keyId).max(1024),
  })
  .strict();

/** `custom` of the {@link COMMAND_ISSUERS_TARGET} target. */
export type IssuersCustom = z.infer<typeof issuersCustomSchema>;

/** A key that may sign commands, and what it may sign. */
export interface CommandIssuer {
  readonly keyid: string;
  readonly key: TufKey;
  /** Command types it may send. */
  readonly types: readonly string[];
  /** Longest `expires - notBefore` it may sign, in seconds. */
  readonly maxValiditySec: number;
  /** Whether it may address one device, a group, or both. */
  readonly targets: readonly CommandTargetKind[];
}

/** The issuers a device trusts now (read-only). */
export interface IssuerSet {
  /** The issuer with this key id; undefined when unknown or revoked. */
  get(keyid: string): CommandIssuer | undefined;
  /** Whether the fleet revoked this key id. */
  isRevoked(keyid: string): boolean;
  /** How many issuers may sign (revoked ones not counted). */
  readonly size: number;
}

/** The outcome of reading the issuers from signed metadata. */
export type IssuersResult = { ok: true; issuers: IssuerSet } | { ok: false; reason: string };

function issuerSet(issuers: ReadonlyMap<string, CommandIssuer>, revoked: ReadonlySet<string>): IssuerSet {
  return Object.freeze({
    get: (keyid: string) => issuers.get(keyid),
    isRevoked: (keyid: string) => revoked.has(keyid),
    size: issuers.size,
  });
}

/** No issuers: every command is refused as `unknown-issuer`. */
export const emptyIssuers: IssuerSet = issuerSet(new Map(), new Set());

/**
 * Reads an issuers document (the target's `custom`). A key id must be the key's own TUF key id, so
 * a signer's copy-paste error cannot grant one key's permissions to another.
 */
export function issuersFromJson(value: unknown): IssuersResult {
  const parsed = issuersCustomSchema.safeParse(value);
  if (!parsed.success) {
    const detail = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.map(String).join('.') || '(document)'}: ${i.message}`)
      .join('; ');
    return { ok: false, reason: `${COMMAND_ISSUERS_TARGET}: custom fields: ${detail}` };
  }
  const revoked = new Set(parsed.data.revoked);
  const issuers = new Map<string, CommandIssuer>();
  for (const [keyid, entry] of Object.entries(parsed.data.issuers)) {
    const actual = keyIdOf(entry.key);
    if (actual !== keyid) return { ok: false, reason: `${COMMAND_ISSUERS_TARGET}: issuer ${keyid}: its key's id is ${actual}` };
    // Revocation wins over a listing: a key named in both stays refused.
    if (revoked.has(keyid)) continue;
    const targets = entry.targets ?? targetKinds;
    issuers.set(keyid, Object.freeze({ keyid, key: entry.key, types: Object.freeze([...entry.types]), maxValiditySec: entry.maxValiditySec, targets: Object.freeze([...targets]) }));
  }
  return { ok: true, issuers: issuerSet(issuers, revoked) };
}

/** The issuers verified targets metadata names; no {@link COMMAND_ISSUERS_TARGET} target means none. */
export function issuersFromTargets(targets: TrustedTargets): IssuersResult {
  const target = targets.get(COMMAND_ISSUERS_TARGET);
  if (target === undefined) return { ok: true, issuers: emptyIssuers };
  return issuersFromJson(target.custom);
}
