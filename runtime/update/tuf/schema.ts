/**
 * TUF 1.0 metadata formats (spec §4 "Document formats") as zod schemas, and the one way untrusted
 * metadata bytes become a model: size limit → UTF-8 → JSON.parse → envelope schema → role schema →
 * canonical signed bytes → deep-frozen model (STYLE 6, after tuf-js's `Metadata.fromJSON`).
 *
 * Parsing does not check signatures, versions or expiry: the client does that (client.ts) against
 * its trusted state. Signatures are always verified over the canonical JSON of the *raw* `signed`
 * object as received, so fields this schema does not know (and strips from the model) still count.
 *
 * Deliberate narrowings, each safer than the spec's minimum: key ids are sha256 hex; a role's
 * key ids are unique; target names are relative paths without `.`/`..` segments (they become
 * URL paths and file names); expiry is `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
 */
import { z } from 'zod';
import { OutpostError } from '../../errors.js';
import { canonicalBytes, CanonicalJsonError } from '../../trust/index.js';

/** The four top-level roles (spec §2.1). */
export const topRoles = ['root', 'timestamp', 'snapshot', 'targets'] as const;
/** A top-level role name. */
export type TopRole = (typeof topRoles)[number];

/** Largest metadata file accepted per role, in bytes (tuf-js's defaults; checked before parsing). */
export const defaultMetadataMaxBytes: Readonly<Record<TopRole, number>> = Object.freeze({
  root: 512_000,
  timestamp: 16_384,
  snapshot: 2_000_000,
  targets: 5_000_000,
});

/** The spec_version this writer emits; the client accepts any 1.x (spec §4.3: major must match). */
export const SPEC_VERSION = '1.0.31';

const keyId = z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 hex key id');
const version = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const expires = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/, 'must be an ISO 8601 UTC time such as 2030-01-01T00:00:00Z')
  .refine((s) => !Number.isNaN(Date.parse(s)), 'is not a valid date');
const specVersion = z.string().regex(/^1\.\d+(\.\d+)?$/, 'must be a 1.x TUF spec version');
const hashes = z
  .record(z.string().regex(/^[a-z0-9-]{1,32}$/), z.string().regex(/^[0-9a-f]{2,128}$/, 'must be lower-case hex'))
  .refine((h) => Object.keys(h).length > 0, 'must list at least one hash');
const length = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** A target path: relative, `/`-separated, no empty, `.` or `..` segments, URL-safe characters. */
export const targetNameSchema = z
  .string()
  .max(1024)
  .regex(/^[A-Za-z0-9._+@=-]+(\/[A-Za-z0-9._+@=-]+)*$/, 'must be a relative path of [A-Za-z0-9._+@=-] segments')
  .refine((s) => s.split('/').every((seg) => seg !== '.' && seg !== '..'), 'must not contain . or .. segments');

/** A signature entry (spec §4.2). */
export const signatureSchema = z.object({ keyid: z.string().max(256), sig: z.string().max(1024) });

/** The signed envelope every metadata file is (spec §4.2). */
export const envelopeSchema = z.object({
  signatures: z.array(signatureSchema).max(256),
  signed: z.record(z.string(), z.unknown()),
});

/** A public key as root lists it (spec §4.2 KEY). Keys of schemes trust/key-signature.ts does not verify parse but never count. */
export const keySchema = z.object({
  keytype: z.string(),
  scheme: z.string(),
  keyval: z.record(z.string(), z.string()),
});

/** A role's keys and threshold (spec §4.3 ROLE). */
export const roleSchema = z.object({
  keyids: z.array(keyId).refine((ids) => new Set(ids).size === ids.length, 'key ids must be unique'),
  threshold: z.number().int().min(1),
});

const common = { spec_version: specVersion, version, expires };

/** root.json's signed part (spec §4.3). */
export const rootSchema = z.object({
  _type: z.literal('root'),
  ...common,
  consistent_snapshot: z.boolean(),
  keys: z.record(keyId, keySchema),
  roles: z.object({ root: roleSchema, timestamp: roleSchema, snapshot: roleSchema, targets: roleSchema }),
});

/** A METAFILES entry (spec §4.4): the version of a metadata file, optionally its length and hashes. */
export const metaFileSchema = z.object({ version, length: length.optional(), hashes: hashes.optional() });

/** timestamp.json's signed part (spec §4.6): it names exactly the current snapshot. */
export const timestampSchema = z.object({
  _type: z.literal('timestamp'),
  ...common,
  meta: z.object({ 'snapshot.json': metaFileSchema }),
});

/** snapshot.json's signed part (spec §4.4): versions of every targets metadata file. */
export const snapshotSchema = z.object({
  _type: z.literal('snapshot'),
  ...common,
  meta: z.record(z.string(), metaFileSchema).refine((m) => m['targets.json'] !== undefined, 'must list targets.json'),
});

/** A target file's description (spec §4.5 TARGETS); `custom` is the application's. */
export const targetFileSchema = z.object({
  length,
  hashes,
  custom: z.record(z.string(), z.unknown()).optional(),
});

/** targets.json's signed part (spec §4.5). Delegations are allowed in the file but not followed. */
export const targetsSchema = z.object({
  _type: z.literal('targets'),
  ...common,
  targets: z.record(z.string(), targetFileSchema).superRefine((targets, ctx) => {
    for (const name of Object.keys(targets)) {
      const ok = targetNameSchema.safeParse(name);
      if (!ok.success) ctx.addIssue({ code: 'custom', path: [name], message: `target name ${JSON.stringify(name)} ${ok.error.issues[0]?.message ?? 'is invalid'}` });
    }
  }),
});

/** The signed part of root metadata. */
export type RootSigned = z.infer<typeof rootSchema>;
/** The signed part of timestamp metadata. */
export type TimestampSigned = z.infer<typeof timestampSchema>;
/** The signed part of snapshot metadata. */
export type SnapshotSigned = z.infer<typeof snapshotSchema>;
/** The signed part of targets metadata. */
export type TargetsSigned = z.infer<typeof targetsSchema>;
/** A METAFILES entry. */
export type MetaFile = z.infer<typeof metaFileSchema>;
/** A target file's description as targets.json holds it. */
export type TargetFile = z.infer<typeof targetFileSchema>;
/** A signature entry. */
export type SignatureEntry = z.infer<typeof signatureSchema>;

/** The signed part of each role's metadata. */
export interface SignedByRole {
  root: RootSigned;
  timestamp: TimestampSigned;
  snapshot: SnapshotSigned;
  targets: TargetsSigned;
}

const schemas: { [R in TopRole]: z.ZodType<SignedByRole[R]> } = {
  root: rootSchema,
  timestamp: timestampSchema,
  snapshot: snapshotSchema,
  targets: targetsSchema,
};

/** A parsed, not yet verified metadata file: the model plus what signatures are checked over. */
export interface ParsedMetadata<R extends TopRole> {
  readonly role: R;
  /** The validated, frozen signed part. */
  readonly signed: Readonly<SignedByRole[R]>;
  readonly signatures: readonly SignatureEntry[];
  /** Canonical JSON of the raw `signed` object: the bytes the signatures cover. */
  readonly signedBytes: Uint8Array;
  /** The file exactly as received (what gets persisted and hashed). */
  readonly bytes: Uint8Array;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function issuesText(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.map(String).join('.') || '(top)'}: ${i.message}`)
    .join('; ');
}

/**
 * Parses metadata bytes for `role`. `source` names the file in errors ("timestamp.json",
 * "3.root.json"). Every failure is UPDATE_METADATA_INVALID. `origin: 'stored'` is for metadata this
 * device already trusted: rules added since it was stored (repeated signature key ids) must not turn
 * it into a corrupt store.
 */
export function parseMetadata<R extends TopRole>(role: R, bytes: Uint8Array, maxBytes: number, source: string, origin: 'fetched' | 'stored' = 'fetched'): ParsedMetadata<R> {
  const bad = (detail: string, cause?: unknown) => new OutpostError('UPDATE_METADATA_INVALID', `${source}: ${detail}`, cause === undefined ? {} : { cause });
  // Size first: a hostile mirror must not make the device parse megabytes (STYLE 6).
  // The fetchers stop reading just past the limit: the byte count says where reading stopped, not how large the file is.
  if (bytes.length > maxBytes) throw bad(`larger than the ${maxBytes} bytes allowed for ${role} metadata (reading stopped after ${bytes.length})`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw bad(`not UTF-8 JSON (${(err as Error).message})`, err);
  }
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) throw bad(`not a signed metadata envelope: ${issuesText(envelope.error)}`);
  // The spec's metadata model refuses these (python-tuf: "duplicate keyids"); tuf-conformance's test_duplicate_sig_keyids.
  // Thresholds always counted each key once, so a stored file with such a list was verified honestly.
  const keyids = envelope.data.signatures.map((s) => s.keyid);
  const repeated = keyids.find((id, i) => keyids.indexOf(id) !== i);
  if (repeated !== undefined && origin === 'fetched') throw bad(`signatures list key id ${repeated} more than once`);
  const type = envelope.data.signed._type;
  if (type !== role) throw bad(`expected ${role} metadata, got _type ${JSON.stringify(type)}`);
  const signed = schemas[role].safeParse(envelope.data.signed);
  if (!signed.success) throw bad(`invalid ${role} metadata: ${issuesText(signed.error)}`);
  let signedBytes: Uint8Array;
  try {
    signedBytes = canonicalBytes(envelope.data.signed);
  } catch (err) {
    if (err instanceof CanonicalJsonError) throw bad(`signed part has no canonical JSON form (${err.message})`, err);
    throw err;
  }
  return Object.freeze({ role, signed: deepFreeze(signed.data), signatures: deepFreeze(envelope.data.signatures), signedBytes, bytes });
}

/** Whether metadata expiring at `expires` is expired at `reference` (spec §5.3.10 etc.: must be later). */
export function isExpired(expiresAt: string, reference: Date): boolean {
  return reference.getTime() >= Date.parse(expiresAt);
}
