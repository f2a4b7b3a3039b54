/**
 * Signed remote commands on `outpost/v1/<device>/cmd` and their results on `…/cmd/result`.
 *
 * A command is a TUF-shaped envelope: `signed` (what the issuer vouches for) and `signatures`
 * (ed25519 over the canonical JSON of `signed`, trust/canonical-json.ts). Verification lives in
 * runtime/commands/verify.ts; this file is only the wire contract (docs/protocol.md).
 *
 * Compatibility rule: within `/1` fields are only ever added, and only as optional. The two
 * documents read that rule differently, on purpose:
 * - `signed` is strict: a device refuses a field it does not know. A signed field is authority
 *   (a new restriction, say), and ignoring authority it does not understand would make an older
 *   device do more than the issuer allowed. A sender uses a newer field only with devices that know it.
 * - The result is open, like the state document: readers ignore fields they do not know, so an
 *   older `outpostctl` keeps reading newer devices.
 */
import { z } from 'zod';
import { OutpostError } from '../errors.js';
import { cmdResultTopic, TOPIC_ID_PATTERN } from './topics.js';

/** The `schema` value of this version of the command's signed part. */
export const COMMAND_SCHEMA_ID = 'outpost.command/1';
/** The `schema` value of this version of the command result. */
export const COMMAND_RESULT_SCHEMA_ID = 'outpost.command-result/1';
/** The `schema` value of this version of a running command's progress event. */
export const COMMAND_PROGRESS_SCHEMA_ID = 'outpost.command-progress/1';
/** Longest `message` of a progress event, in characters. */
export const COMMAND_PROGRESS_MESSAGE_MAX_CHARS = 256;
/** Size cap of a command envelope and of a result, checked before JSON.parse. */
export const COMMAND_MAX_BYTES = 64 * 1024;
/** Longest MQTT 5 Correlation Data a device echoes with its result. */
export const COMMAND_CORRELATION_MAX_BYTES = 256;
/** Longest Response Topic a device answers on (UTF-8 bytes); longer ones fall back to `cmd/result`. */
export const COMMAND_RESPONSE_TOPIC_MAX_BYTES = 256;
/**
 * The id a result carries when the command's own id is not known: unreadable, or claimed by a
 * message refused before its signature verified (the claim is then in `claimedId`).
 */
export const UNKNOWN_COMMAND_ID = 'unknown';

/** What a command id looks like: it names the command in results and in the replay store. */
export const COMMAND_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** What a command type looks like (the key of the device's handler registry). */
export const COMMAND_TYPE_PATTERN = /^[a-z][a-z0-9-]{0,63}$/;
/** A TUF key id: sha256 hex of the key object's canonical JSON (trust/ed25519.ts `keyIdOf`). */
export const KEY_ID_PATTERN = /^[0-9a-f]{64}$/;

/** How a command ended, as its result reports it. */
export const commandOutcomes = ['succeeded', 'failed', 'rejected', 'expired', 'interrupted'] as const;
/** How a command ended. */
export type CommandOutcome = (typeof commandOutcomes)[number];

/**
 * Why a command was refused: stable codes, listed in docs/protocol.md in the order verification
 * meets them. Adding one is a protocol change: document it.
 */
export const commandRejections = [
  'oversized',
  'malformed-json',
  'schema',
  'unknown-issuer',
  'revoked-issuer',
  'bad-signature',
  'wrong-target',
  'validity-too-long',
  'expired',
  'not-yet-valid',
  'replayed-id',
  'replayed-nonce',
  'type-not-allowed',
  'unknown-type',
  'bad-args',
] as const;
/** Why a command was refused. */
export type CommandRejection = (typeof commandRejections)[number];

const keyId = z.string().regex(KEY_ID_PATTERN, 'must be a 64-character lower-case hex key id');
const topicId = z.string().regex(TOPIC_ID_PATTERN, 'must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit');

/** zod schema of a command's signed part (the JSON Schema in docs/protocol.md is generated from it). */
export const commandSignedSchema = z
  .object({
    schema: z.literal(COMMAND_SCHEMA_ID).describe('Document type and version.'),
    id: z
      .string()
      .regex(COMMAND_ID_PATTERN, 'must be 1-128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit')
      .describe('Unique id of this command, chosen by the issuer; a device executes an id at most once.'),
    issuer: keyId.describe('Key id of the issuing key; one of the signatures must be by this key.'),
    target: z
      .union([
        z.object({ device: topicId.describe('The one device this command is for.') }).strict(),
        z.object({ group: topicId.describe('The group whose devices this command is for.') }).strict(),
      ])
      .describe('Who must execute the command: one device, or every device of a group.'),
    type: z
      .string()
      .regex(COMMAND_TYPE_PATTERN, 'must be 1-64 characters of a-z 0-9 - starting with a letter')
      .describe('Command type: selects the handler on the device and the issuer permission it needs.'),
    args: z.record(z.string(), z.unknown()).describe("The handler's arguments ({} when it takes none); their schema is the handler's."),
    notBefore: z.iso.datetime().describe('Earliest time the command may run (UTC, RFC 3339 with Z).'),
    expires: z.iso.datetime().describe('Time from which the command is refused as expired (UTC, RFC 3339 with Z); later than notBefore.'),
    nonce: z
      .string()
      .regex(/^[0-9a-f]{32,128}$/, 'must be 32-128 lower-case hex characters')
      .describe('Random value, never used twice by the issuer (the device refuses a nonce it has seen).'),
  })
  .strict()
  .superRefine((signed, ctx) => {
    if (Date.parse(signed.expires) <= Date.parse(signed.notBefore)) ctx.addIssue({ code: 'custom', path: ['expires'], message: 'must be later than notBefore' });
  })
  .describe(`The part of a command the issuer signs (${COMMAND_SCHEMA_ID}).`);

/** The signed part of a command. */
export type CommandSigned = z.infer<typeof commandSignedSchema>;
/** Whether a command is for one device or for a group. */
export type CommandTargetKind = 'device' | 'group';

/** zod schema of the envelope published on `cmd` (TUF-shaped: runtime/update/tuf/schema.ts). */
export const commandEnvelopeSchema = z
  .object({
    signed: commandSignedSchema,
    signatures: z
      .array(
        z.object({
          keyid: keyId.describe('Key id of the signing key.'),
          sig: z.string().regex(/^[0-9a-f]{2,1024}$/, 'must be lower-case hex').describe('ed25519 signature (hex) over the canonical JSON of signed.'),
        }),
      )
      .min(1)
      .max(8)
      .describe('Signatures over the canonical JSON of signed; only the one by the issuer counts.'),
  })
  .describe(`Signed command envelope, topic outpost/v1/<device>/cmd (signed.schema ${COMMAND_SCHEMA_ID}).`);

/** A command envelope as published. */
export type CommandEnvelope = z.infer<typeof commandEnvelopeSchema>;

/** zod schema of a command result (the JSON Schema in docs/protocol.md is generated from it). */
export const commandResultSchema = z
  .object({
    schema: z.literal(COMMAND_RESULT_SCHEMA_ID).describe('Document type and version.'),
    id: z
      .string()
      .regex(COMMAND_ID_PATTERN)
      .describe(`The command's id; "${UNKNOWN_COMMAND_ID}" when the message was refused before its signature verified.`),
    claimedId: z
      .string()
      .regex(COMMAND_ID_PATTERN)
      .optional()
      .describe(`Only with id "${UNKNOWN_COMMAND_ID}": the id the refused message claimed, unauthenticated (anyone can send a message claiming any id).`),
    deviceId: topicId.describe('The device that answers; equals the <device> topic level.'),
    type: z.string().regex(COMMAND_TYPE_PATTERN).optional().describe("The command's type, when its signature verified."),
    outcome: z.enum(commandOutcomes).describe('succeeded, failed (the handler failed), rejected (not executed), expired (arrived too late, not executed), interrupted (the daemon stopped mid-run).'),
    reason: z
      .enum(commandRejections)
      .optional()
      .describe('Why the command was refused: present exactly when outcome is rejected or expired (expired goes with reason expired only).'),
    message: z.string().max(1024).describe('Human-readable detail.'),
    output: z.unknown().optional().describe("The handler's result (JSON), when it returned one."),
    startedAt: z.iso.datetime().optional().describe('When the handler started (UTC, RFC 3339 with Z); absent when it never ran.'),
    finishedAt: z.iso.datetime().describe('When the outcome was decided (UTC, RFC 3339 with Z).'),
  })
  .superRefine((result, ctx) => {
    if (result.claimedId !== undefined && result.id !== UNKNOWN_COMMAND_ID) ctx.addIssue({ code: 'custom', path: ['claimedId'], message: `is only for a result with id ${UNKNOWN_COMMAND_ID}` });
    const refused = result.outcome === 'rejected' || result.outcome === 'expired';
    if (refused && result.reason === undefined) ctx.addIssue({ code: 'custom', path: ['reason'], message: `is required when outcome is ${result.outcome}` });
    if (!refused && result.reason !== undefined) ctx.addIssue({ code: 'custom', path: ['reason'], message: `must be absent when outcome is ${result.outcome}` });
    if (refused && result.reason !== undefined && (result.outcome === 'expired') !== (result.reason === 'expired')) {
      ctx.addIssue({ code: 'custom', path: ['reason'], message: 'expired is both the outcome and the reason, or neither' });
    }
  })
  .describe('Result of a command, on the request\'s Response Topic or outpost/v1/<device>/cmd/result.');

/** A command result as published. */
export type CommandResult = z.infer<typeof commandResultSchema>;

/** zod schema of a running command's progress event (the JSON Schema in docs/protocol.md is generated from it). */
export const commandProgressSchema = z
  .object({
    schema: z.literal(COMMAND_PROGRESS_SCHEMA_ID).describe('Document type and version.'),
    id: z.string().regex(COMMAND_ID_PATTERN).describe("The running command's id."),
    deviceId: topicId.describe('The device that runs it; equals the <device> topic level.'),
    type: z.string().regex(COMMAND_TYPE_PATTERN).describe("The command's type."),
    fraction: z.number().min(0).max(1).optional().describe('How much of the work is done, from 0 to 1, when the handler can tell.'),
    message: z.string().max(COMMAND_PROGRESS_MESSAGE_MAX_CHARS).optional().describe('What the handler is doing, for a person.'),
    at: z.iso.datetime().describe('When the handler reported it (device wall clock, UTC, RFC 3339 with Z).'),
  })
  .describe('Progress of a running command, on outpost/v1/<device>/events; only its result is final.');

/** A progress event as published. */
export type CommandProgress = z.infer<typeof commandProgressSchema>;

/**
 * JSON Schema (draft 2020-12) of the command envelope. Generated for the input side; `signed`
 * keeps `additionalProperties: false` because the device refuses unknown signed fields.
 */
export function commandEnvelopeJsonSchema(): Record<string, unknown> {
  return { ...z.toJSONSchema(commandEnvelopeSchema, { io: 'input', target: 'draft-2020-12' }), title: COMMAND_SCHEMA_ID };
}

/** JSON Schema (draft 2020-12) of the command result, open for fields added later within `/1`. */
export function commandResultJsonSchema(): Record<string, unknown> {
  return { ...z.toJSONSchema(commandResultSchema, { io: 'input', target: 'draft-2020-12' }), title: COMMAND_RESULT_SCHEMA_ID };
}

/** JSON Schema (draft 2020-12) of the progress event, open for fields added later within `/1`. */
export function commandProgressJsonSchema(): Record<string, unknown> {
  return { ...z.toJSONSchema(commandProgressSchema, { io: 'input', target: 'draft-2020-12' }), title: COMMAND_PROGRESS_SCHEMA_ID };
}

/** The first issue of a zod error as `path: message` (`(document)` when it is about the whole). */
function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue === undefined || issue.path.length === 0 ? '(document)' : issue.path.map(String).join('.');
  return `${where}: ${issue?.message ?? 'unknown error'}`;
}

function validate<T>(schema: z.ZodType<T>, schemaId: string, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new OutpostError('PROTOCOL_INVALID', `invalid ${schemaId} document at ${firstIssue(result.error)}`, { cause: result.error });
}

/** Validates a command's signed part; throws `PROTOCOL_INVALID` naming the first bad field. */
export function validateCommandSigned(value: unknown): CommandSigned {
  return validate(commandSignedSchema, COMMAND_SCHEMA_ID, value);
}

/** Validates an already-parsed result; throws `PROTOCOL_INVALID` naming the first bad field. */
export function validateCommandResult(value: unknown): CommandResult {
  return validate(commandResultSchema, COMMAND_RESULT_SCHEMA_ID, value);
}

/** Serialises a result for publishing, validating it first so nothing off-contract leaves. */
export function encodeCommandResult(result: CommandResult): string {
  const text = JSON.stringify(validateCommandResult(result));
  const bytes = Buffer.byteLength(text);
  if (bytes > COMMAND_MAX_BYTES) {
    throw new OutpostError('PROTOCOL_INVALID', `${COMMAND_RESULT_SCHEMA_ID} document would be ${bytes} bytes, more than the ${COMMAND_MAX_BYTES} allowed`);
  }
  return text;
}

/** Serialises a progress event for publishing, validating it first so nothing off-contract leaves. */
export function encodeCommandProgress(progress: CommandProgress): string {
  return JSON.stringify(validate(commandProgressSchema, COMMAND_PROGRESS_SCHEMA_ID, progress));
}

/** Parses a result payload (size-checked, then JSON, then schema). */
export function parseCommandResult(payload: string | Uint8Array): CommandResult {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (bytes > COMMAND_MAX_BYTES) {
    throw new OutpostError('PROTOCOL_INVALID', `${COMMAND_RESULT_SCHEMA_ID} document is ${bytes} bytes, more than the ${COMMAND_MAX_BYTES} allowed`);
  }
  const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new OutpostError('PROTOCOL_INVALID', `${COMMAND_RESULT_SCHEMA_ID} document is not JSON: ${(err as Error).message}`, { cause: err });
  }
  return validateCommandResult(value);
}

/**
 * The topic a device publishes a command's result on: the request's MQTT 5 Response Topic when it
 * is this device's own `outpost/v1/<device>/cmd/result` or a plain topic name below it (no `+` or
 * `#`, no empty level, no U+0000, well-formed UTF-16, at most
 * {@link COMMAND_RESPONSE_TOPIC_MAX_BYTES} bytes), else `outpost/v1/<device>/cmd/result`. The
 * Response Topic is read before anything is verified: anywhere else, an unsigned message could
 * make the device publish on another device's topics or anywhere on the broker.
 */
export function commandResultTopicFor(deviceId: string, responseTopic: string | undefined): string {
  const own = cmdResultTopic(deviceId);
  const plain =
    responseTopic !== undefined &&
    (responseTopic === own || responseTopic.startsWith(`${own}/`)) &&
    !responseTopic.split('/').includes('') &&
    !/[+#\u0000]|\p{Cs}/u.test(responseTopic) &&
    Buffer.byteLength(responseTopic) <= COMMAND_RESPONSE_TOPIC_MAX_BYTES;
  return plain ? responseTopic : own;
}
