/**
 * Verifies a command envelope as it arrives from the broker, in one fixed order (docs/protocol.md,
 * "Verification"): size → JSON → schema → issuer revoked → issuer unknown → signature → target →
 * validity → replay → type → args. Each check returns at once with its reason and nothing after it
 * runs, so cheap checks shield expensive ones, and nothing an unauthenticated sender controls
 * reaches the replay store or a handler's schema before the signature has verified.
 *
 * Invariants:
 * - The signature covers the canonical JSON of `signed` exactly as received (STYLE 6, like TUF).
 *   `signed` is strict, so what was verified is also everything the device acts on.
 * - Only a signature by the issuer's own key counts; signatures by other keys are ignored, even
 *   when they are over the right bytes.
 * - One reference time per verification: max(now, notEarlierThan), since a gateway without an RTC
 *   may boot into the past (the same rule as the TUF client's newest signed time seen).
 * - `authentic` is true only once the signature verified: the caller records refusals, and spends
 *   the replay store, only for commands an issuer really signed.
 */
import type { z } from 'zod';
import {
  COMMAND_ID_PATTERN,
  COMMAND_MAX_BYTES,
  COMMAND_TYPE_PATTERN,
  commandEnvelopeSchema,
  type CommandEnvelope,
  type CommandRejection,
  type CommandSigned,
} from '../protocol/index.js';
import { canonicalBytes, verify, type Signature } from '../trust/index.js';
import type { CommandIssuer, IssuerSet } from './issuers.js';

/** What verification needs to know about this device and the moment. */
export interface VerifyContext {
  readonly deviceId: string;
  /** Groups this device belongs to. */
  readonly groups: readonly string[];
  readonly issuers: IssuerSet;
  /** The wall clock. */
  readonly now: Date;
  /** The newest trusted time seen (gateways have no RTC): the reference time is never earlier. */
  readonly notEarlierThan?: Date;
  /** Tolerance for `notBefore` only (an issuer's clock a little ahead); expiry gets none. */
  readonly skewMs: number;
  /** Largest envelope accepted, in bytes (default {@link COMMAND_MAX_BYTES}). */
  readonly maxBytes?: number;
  /** Replay store lookup: whether this id or this nonce was seen before. */
  seen(id: string, nonce: string): Promise<'id' | 'nonce' | undefined>;
  /** Command types this device knows, each with the schema of its args. */
  readonly argsSchemas: ReadonlyMap<string, z.ZodType>;
}

/** A verified command, with its args as the type's schema parsed them (defaults applied). */
export interface Accepted {
  readonly ok: true;
  readonly command: Readonly<CommandSigned>;
  readonly args: unknown;
}

/** A refused command: the stable reason, detail for a person, and what could be read of it. */
export interface Refused {
  readonly ok: false;
  readonly reason: CommandRejection;
  /** At most 1024 characters, so it fits a result as is. */
  readonly message: string;
  /** The command's id, once the envelope parsed far enough to read one. */
  readonly id?: string;
  /** The command's type, once readable. */
  readonly type?: string;
  /** Whether the issuer's signature verified (false for everything refused before that). */
  readonly authentic: boolean;
  /** The signed part, only when authentic: what the caller records a refusal under (id, nonce, expires). */
  readonly command?: Readonly<CommandSigned>;
}

/** The outcome of {@link verifyCommand}. */
export type Verdict = Accepted | Refused;

const maxMessageChars = 1024;

/** What a refusal can say about the command it refuses. */
interface Known {
  id?: string;
  type?: string;
  authentic: boolean;
  command?: Readonly<CommandSigned>;
}

function refuse(reason: CommandRejection, message: string, known: Known): Refused {
  const clipped = message.length > maxMessageChars ? `${message.slice(0, maxMessageChars - 1)}…` : message;
  return {
    ok: false,
    reason,
    message: clipped,
    ...(known.id === undefined ? {} : { id: known.id }),
    ...(known.type === undefined ? {} : { type: known.type }),
    authentic: known.authentic,
    ...(known.command === undefined ? {} : { command: known.command }),
  };
}

/** `signed.id` and `signed.type` of a parsed value that may be anything, when they look like ones. */
function readable(json: unknown): Known {
  const signed = typeof json === 'object' && json !== null ? (json as { signed?: unknown }).signed : undefined;
  if (typeof signed !== 'object' || signed === null) return { authentic: false };
  const { id, type } = signed as { id?: unknown; type?: unknown };
  return {
    ...(typeof id === 'string' && COMMAND_ID_PATTERN.test(id) ? { id } : {}),
    ...(typeof type === 'string' && COMMAND_TYPE_PATTERN.test(type) ? { type } : {}),
    authentic: false,
  };
}

/** The first few issues as `path: message`, paths from the envelope (`args` issues are below `signed.args`). */
function issuesText(error: z.ZodError, under: readonly string[]): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${[...under, ...i.path.map(String)].join('.') || '(envelope)'}: ${i.message}`)
    .join('; ');
}

/** The bytes the issuer signed, or why the raw `signed` has none (floats, lone surrogates in args). */
function signedBytesOf(json: unknown): Uint8Array | string {
  try {
    return canonicalBytes((json as { signed: unknown }).signed);
  } catch (err) {
    return (err as Error).message;
  }
}

function signedByIssuer(issuer: CommandIssuer, signatures: readonly Signature[], bytes: Uint8Array): boolean {
  const publicKey = issuer.key.keyval.public;
  if (publicKey === undefined) return false;
  return signatures.some((s) => s.keyid === issuer.keyid && verify(publicKey, bytes, s.sig));
}

/** The target check; a message when the command is not for this device or the issuer may not address it so. */
function targetProblem(command: CommandSigned, issuer: CommandIssuer, ctx: VerifyContext): string | undefined {
  const kind = 'device' in command.target ? 'device' : 'group';
  if ('device' in command.target) {
    if (command.target.device !== ctx.deviceId) return `the command is for device ${command.target.device}, this is ${ctx.deviceId}`;
  } else if (!ctx.groups.includes(command.target.group)) {
    return `the command is for group ${command.target.group}, which this device is not in`;
  }
  if (!issuer.targets.includes(kind)) return `issuer ${issuer.keyid} may not address a ${kind}`;
  return undefined;
}

/** The validity check at the one reference time of this verification. */
function validityProblem(command: CommandSigned, issuer: CommandIssuer, ctx: VerifyContext): { reason: CommandRejection; message: string } | undefined {
  const notBefore = Date.parse(command.notBefore);
  const expires = Date.parse(command.expires);
  const windowMs = expires - notBefore;
  if (windowMs > issuer.maxValiditySec * 1000) {
    return { reason: 'validity-too-long', message: `valid for ${windowMs / 1000} s, more than the ${issuer.maxValiditySec} s issuer ${issuer.keyid} may sign` };
  }
  const reference = Math.max(ctx.now.getTime(), ctx.notEarlierThan?.getTime() ?? -Infinity);
  const at = new Date(reference).toISOString();
  if (reference >= expires) return { reason: 'expired', message: `expired at ${command.expires} (reference time ${at})` };
  if (reference + ctx.skewMs < notBefore) return { reason: 'not-yet-valid', message: `not valid before ${command.notBefore} (reference time ${at}, skew ${ctx.skewMs} ms)` };
  return undefined;
}

/** Verifies one command envelope (the raw MQTT payload). Never throws for bad input: it refuses it. */
export async function verifyCommand(raw: Uint8Array, ctx: VerifyContext): Promise<Verdict> {
  const maxBytes = ctx.maxBytes ?? COMMAND_MAX_BYTES;
  // Size before parsing: a hostile message must not make the device parse megabytes.
  if (raw.byteLength > maxBytes) return refuse('oversized', `the message is ${raw.byteLength} bytes, more than the ${maxBytes} allowed`, { authentic: false });

  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
  } catch (err) {
    return refuse('malformed-json', `not UTF-8 JSON: ${(err as Error).message}`, { authentic: false });
  }
  return verifyEnvelope(json, ctx);
}

/**
 * The checks of {@link verifyCommand} from the schema on, for an envelope already parsed: the
 * installer runs them on the envelope the agent shows it as proof of a grant (installer/access-gate.ts).
 */
export async function verifyEnvelope(json: unknown, ctx: Omit<VerifyContext, 'maxBytes'>): Promise<Verdict> {
  const known = readable(json);
  const parsed = commandEnvelopeSchema.safeParse(json);
  if (!parsed.success) return refuse('schema', `not a valid command envelope: ${issuesText(parsed.error, [])}`, known);
  const signedBytes = signedBytesOf(json);
  if (typeof signedBytes === 'string') return refuse('schema', `signed has no canonical JSON form: ${signedBytes}`, known);
  const command = parsed.data.signed;

  if (ctx.issuers.isRevoked(command.issuer)) return refuse('revoked-issuer', `issuer ${command.issuer} is revoked`, known);
  const issuer = ctx.issuers.get(command.issuer);
  if (issuer === undefined) return refuse('unknown-issuer', `issuer ${command.issuer} is not a command issuer of this device`, known);

  if (!signedByIssuer(issuer, parsed.data.signatures, signedBytes)) return refuse('bad-signature', `no valid signature by issuer ${issuer.keyid}`, known);
  const authentic: Known = { ...known, authentic: true, command: deepFreeze(command) };

  const target = targetProblem(command, issuer, ctx);
  if (target !== undefined) return refuse('wrong-target', target, authentic);

  const validity = validityProblem(command, issuer, ctx);
  if (validity !== undefined) return refuse(validity.reason, validity.message, authentic);

  const replay = await ctx.seen(command.id, command.nonce);
  if (replay === 'id') return refuse('replayed-id', `command id ${command.id} was seen before`, authentic);
  if (replay === 'nonce') return refuse('replayed-nonce', `nonce ${command.nonce} was seen before`, authentic);

  const argsSchema = ctx.argsSchemas.get(command.type);
  if (argsSchema === undefined) return refuse('unknown-type', `this device has no command type ${command.type}`, authentic);
  if (!issuer.types.includes(command.type)) return refuse('type-not-allowed', `issuer ${issuer.keyid} may not send ${command.type}`, authentic);

  const args = argsSchema.safeParse(command.args);
  if (!args.success) return refuse('bad-args', `args of ${command.type}: ${issuesText(args.error, ['signed', 'args'])}`, authentic);
  accepted.set(command, { signed: command, signatures: parsed.data.signatures });
  return { ok: true, command, args: args.data };
}

/**
 * Handlers are given the signed part only; one that must show the installer its proof
 * (`grant-access`) needs the signatures too, and looks the envelope up by that signed part.
 */
const accepted = new WeakMap<CommandSigned, CommandEnvelope>();

/** The envelope an accepted command came in (undefined for a command this process did not accept). */
export function acceptedEnvelope(command: CommandSigned): CommandEnvelope | undefined {
  return accepted.get(command);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
