/**
 * The retained state document a device publishes on `outpost/v1/<device>/state`.
 *
 * Compatibility rule: within `outpost.state/1` fields are only ever added, and only as optional.
 * Readers therefore ignore fields they do not know (parsing strips them, and the published JSON
 * Schema allows them) so an older `outpostctl` keeps reading newer devices. A change a reader
 * cannot ignore gets a new `schema` value.
 */
import { z } from 'zod';
import { OutpostError } from '../errors.js';
import { TOPIC_ID_PATTERN } from './topics.js';

/** The `schema` value of this version of the state document. */
export const STATE_SCHEMA_ID = 'outpost.state/1';

/** Health summary values; `unknown` until the first round of checks has run. */
export const healthValues = ['ok', 'degraded', 'unknown'] as const;

/** The detailed health summary's values: `failed` when a required check fails. */
export const healthStatusValues = ['unknown', 'ok', 'degraded', 'failed'] as const;

/**
 * The detailed health report in the state document (`healthReport`): added within
 * `outpost.state/1`, so readers that know only `health` keep working. `health` stays the v1
 * summary, with `failed` shown there as `degraded` (its enum has no `failed`, and readers of the
 * published JSON Schema would reject a value it does not list).
 */
export const stateHealthReportSchema = z
  .object({
    status: z.enum(healthStatusValues).describe('ok, degraded (a wanted check fails), failed (a required check fails), unknown before the first verdicts.'),
    checks: z
      .record(
        z.string(),
        z.object({
          status: z.enum(['unknown', 'passing', 'failing']),
          severity: z.enum(['required', 'wanted']),
          since: z.string().describe('When the status last changed (UTC, RFC 3339).'),
          detail: z.string().max(300).optional().describe('Why, from the last run (cut to 300 characters).'),
        }),
      )
      .describe('Per check, by name.'),
    safeMode: z.string().max(1000).optional().describe('Why outpost is in safe mode: no deployment is healthy; it stays up and reachable and does not reboot.'),
    attention: z.string().max(1000).optional().describe('Why a person is needed: the reboot breaker is open while a check still fails.'),
  })
  .describe('Health checks and remediation state.');

/** Size cap checked before JSON.parse, so a hostile or broken retained message costs little. */
export const STATE_MAX_BYTES = 64 * 1024;

/** zod schema of the state document (the JSON Schema in docs/protocol.md is generated from it). */
export const stateDocumentSchema = z
  .object({
    schema: z.literal(STATE_SCHEMA_ID).describe('Document type and version.'),
    deviceId: z.string().regex(TOPIC_ID_PATTERN).describe('The device this document describes; equals the <device> topic level.'),
    version: z.string().min(1).max(64).describe('Version of the outpost daemon that published the document.'),
    bootedCommit: z
      .string()
      .min(1)
      .max(128)
      .nullable()
      .optional()
      .describe('OSTree checksum of the booted deployment; null when not booted from OSTree, absent when not yet known.'),
    health: z.enum(healthValues).describe('Health summary: ok, degraded, or unknown before the first checks ran.'),
    healthReport: stateHealthReportSchema.optional(),
    update: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('Update progress; its shape is defined by the update domain (reserved slot).'),
    updatedAt: z.iso.datetime().describe('When the device last changed this document (UTC, RFC 3339 with Z).'),
  })
  .describe('Retained device state, topic outpost/v1/<device>/state.');

/** A state document as published. */
export type StateDocument = z.infer<typeof stateDocumentSchema>;

/**
 * JSON Schema (draft 2020-12) of the state document.
 *
 * Generated for the input side so `additionalProperties` stays open: consumers in other languages
 * validating with it must accept fields added later within `outpost.state/1`.
 */
export function stateJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(stateDocumentSchema, { io: 'input', target: 'draft-2020-12' }),
    title: STATE_SCHEMA_ID,
  };
}

/** Validates an already-parsed value; throws `PROTOCOL_INVALID` naming the first bad field. */
export function validateStateDocument(value: unknown): StateDocument {
  const result = stateDocumentSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue === undefined || issue.path.length === 0 ? '(document)' : issue.path.join('.');
  throw new OutpostError('PROTOCOL_INVALID', `invalid ${STATE_SCHEMA_ID} document at ${where}: ${issue?.message ?? 'unknown error'}`, {
    cause: result.error,
  });
}

/** Parses a state message payload (size-checked, then JSON, then schema). */
export function parseStateDocument(payload: string | Uint8Array): StateDocument {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (bytes > STATE_MAX_BYTES) {
    throw new OutpostError('PROTOCOL_INVALID', `${STATE_SCHEMA_ID} document is ${bytes} bytes, more than the ${STATE_MAX_BYTES} allowed`);
  }
  const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new OutpostError('PROTOCOL_INVALID', `${STATE_SCHEMA_ID} document is not JSON: ${(err as Error).message}`, { cause: err });
  }
  return validateStateDocument(value);
}

/** Serialises a state document for publishing, validating it first so nothing off-contract leaves. */
export function encodeStateDocument(doc: StateDocument): string {
  const valid = validateStateDocument(doc);
  const text = JSON.stringify(valid);
  if (Buffer.byteLength(text) > STATE_MAX_BYTES) {
    throw new OutpostError('PROTOCOL_INVALID', `${STATE_SCHEMA_ID} document would be ${Buffer.byteLength(text)} bytes, more than the ${STATE_MAX_BYTES} allowed`);
  }
  return text;
}
