/**
 * Making commands: the signed part with fresh nonce and validity window, and its envelope. Used by
 * `outpostctl command send` and the tests; the device never signs commands.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { COMMAND_SCHEMA_ID, validateCommandSigned, type CommandEnvelope, type CommandSigned } from '../protocol/index.js';
import { canonicalBytes, sign, type PrivateKey } from '../trust/index.js';

/** What a sender chooses; the rest of the signed part is filled in. */
export interface NewCommand {
  /** Key id of the issuing key (the key that will sign). */
  readonly issuer: string;
  readonly target: CommandSigned['target'];
  readonly type: string;
  readonly args?: Record<string, unknown>;
  /** Random (a UUID) when not given. */
  readonly id?: string;
  /** `expires - notBefore`, in seconds; must not exceed the issuer's `maxValiditySec`. */
  readonly validitySec: number;
  /** `notBefore`; the sender's clock when not given. */
  readonly now?: Date;
}

/** A command's signed part: `schema`, a 16-byte random hex nonce, `notBefore` = now, `expires` = now + validity. Throws `PROTOCOL_INVALID` for a field off the contract. */
export function newCommand(options: NewCommand): CommandSigned {
  const now = options.now ?? new Date();
  return validateCommandSigned({
    schema: COMMAND_SCHEMA_ID,
    id: options.id ?? randomUUID(),
    issuer: options.issuer,
    target: options.target,
    type: options.type,
    args: options.args ?? {},
    notBefore: now.toISOString(),
    expires: new Date(now.getTime() + options.validitySec * 1000).toISOString(),
    nonce: randomBytes(16).toString('hex'),
  });
}

/**
 * The envelope of `signed`, signed by `key` over its canonical JSON. Validated first, so nothing a
 * device would refuse as `schema` gets signed; the key should be the issuer's (others' signatures
 * are ignored by devices).
 */
export function signCommand(signed: CommandSigned, key: PrivateKey): CommandEnvelope {
  const valid = validateCommandSigned(signed);
  return { signed: valid, signatures: [sign(key, canonicalBytes(valid))] };
}
