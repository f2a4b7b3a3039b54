/**
 * The authorized-keys lines of just-in-time access: a public key taken from a signed command is
 * parsed strictly and written back in a form outpost chose, never as it came, so nothing the sender
 * wrote can become an sshd option (`command=`, `permitopen=`, a second key on a new line).
 *
 * Invariants:
 * - A key is one `<type> <base64>` pair (an optional comment is dropped) of an allowed type whose
 *   decoded blob names the same type and has that type's exact structure; printable ASCII only.
 * - Every rendered line starts with `expiry-time="…Z"` (sshd refuses the key after it, by its wall
 *   clock) and `restrict` (no forwarding, no agent, no X11, no user rc), re-enabling only `pty`;
 *   `from=` when the grant names source addresses.
 * - Pure: no I/O, so the agent and the installer render and check the same way.
 */
import { createHash } from 'node:crypto';
import { COMMAND_ID_PATTERN } from '../protocol/index.js';

/** Key types a grant may carry (FIDO `sk-` keys and DSA are not among them). */
export const ACCESS_KEY_TYPES = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'] as const;
export type AccessKeyType = (typeof ACCESS_KEY_TYPES)[number];

/** Smallest RSA modulus accepted, in bits. */
export const MIN_RSA_BITS = 2048;

/** Longest public-key text accepted (an RSA-16384 key is ~2.8 KB). */
export const MAX_PUBLIC_KEY_CHARS = 8192;

/** A local account name sshd can be asked about: what `useradd` accepts, without `$`. */
export const PRINCIPAL_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;

/** One element of a `from=` pattern list: a host name, address or CIDR, with `*`/`?` wildcards and `!` negation. */
const FROM_ELEMENT = /^!?[A-Za-z0-9.:*?/_-]{1,255}$/;

/** A parsed public key: the normalized text and its OpenSSH SHA256 fingerprint. */
export interface PublicKey {
  readonly type: AccessKeyType;
  /** `<type> <base64>`, no comment. */
  readonly text: string;
  /** `SHA256:<unpadded base64>`, as `ssh-keygen -l` and sshd's log print it. */
  readonly fingerprint: string;
}

/** Reads SSH wire strings (uint32 length + bytes) off a key blob. */
class BlobReader {
  private offset = 0;
  constructor(private readonly blob: Buffer) {}
  string(): Buffer {
    if (this.offset + 4 > this.blob.length) throw new Error('the key blob is cut short');
    const length = this.blob.readUInt32BE(this.offset);
    this.offset += 4;
    if (length > this.blob.length - this.offset) throw new Error('the key blob is cut short');
    const value = this.blob.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  end(): void {
    if (this.offset !== this.blob.length) throw new Error('the key blob has trailing bytes');
  }
}

const ecdsaPointBytes: Record<string, number> = { nistp256: 65, nistp384: 97, nistp521: 133 };

function checkBlob(type: AccessKeyType, blob: Buffer): void {
  const reader = new BlobReader(blob);
  if (reader.string().toString('latin1') !== type) throw new Error(`the key blob does not name ${type}`);
  if (type === 'ssh-ed25519') {
    if (reader.string().length !== 32) throw new Error('an ed25519 key is 32 bytes');
  } else if (type === 'ssh-rsa') {
    const exponent = reader.string();
    const modulus = reader.string();
    if (exponent.length === 0 || exponent.length > 8) throw new Error('the RSA exponent is malformed');
    // An mpint may carry one leading zero byte so it reads as positive.
    const bits = (modulus[0] === 0 ? modulus.length - 1 : modulus.length) * 8;
    if (bits < MIN_RSA_BITS) throw new Error(`an RSA key must have at least ${MIN_RSA_BITS} bits (this one has ~${bits})`);
  } else {
    const curve = type.slice('ecdsa-sha2-'.length);
    if (reader.string().toString('latin1') !== curve) throw new Error(`the key blob does not name curve ${curve}`);
    const point = reader.string();
    if (point.length !== ecdsaPointBytes[curve] || point[0] !== 4) throw new Error(`the ${curve} point is malformed`);
  }
  reader.end();
}

/** OpenSSH's SHA256 fingerprint of a key blob. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Parses one public key as `ssh-keygen` writes it (`<type> <base64> [comment]`); throws an Error
 * saying what is wrong. Options before the type, a second line or control characters are refused.
 */
export function parsePublicKey(input: string): PublicKey {
  if (input.length > MAX_PUBLIC_KEY_CHARS) throw new Error(`longer than ${MAX_PUBLIC_KEY_CHARS} characters`);
  const trimmed = input.replace(/\n$/, '');
  if (!/^[\x20-\x7e]+$/.test(trimmed)) throw new Error('must be one line of printable ASCII');
  const [type, base64, ...rest] = trimmed.trim().split(/ +/);
  if (!(ACCESS_KEY_TYPES as readonly string[]).includes(type ?? '')) throw new Error(`must start with a key type (${ACCESS_KEY_TYPES.join(', ')}); sshd options are not accepted`);
  if (base64 === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64) || base64.length % 4 !== 0) throw new Error('the key is not base64');
  // The comment is dropped, so it may say anything printable; it is bounded by the length above.
  void rest;
  const blob = Buffer.from(base64, 'base64');
  checkBlob(type as AccessKeyType, blob);
  return { type: type as AccessKeyType, text: `${type} ${blob.toString('base64')}`, fingerprint: fingerprintOf(blob) };
}

/** Whether `from` is a pattern list sshd reads as intended (no quotes, no spaces); throws saying why not. */
export function checkFromPatterns(from: string): string {
  const elements = from.split(',');
  if (from.length > 1024 || elements.length > 32) throw new Error('at most 32 patterns, 1024 characters');
  for (const element of elements) {
    if (!FROM_ELEMENT.test(element)) throw new Error(`"${element.slice(0, 64)}" is not a host, address or CIDR pattern`);
  }
  return from;
}

/** One granted key as written for its principal. */
export interface AuthorizedKeyEntry {
  /** The grant's id (the command id): the line's comment, so an operator reading the file can tell them apart. */
  readonly id: string;
  readonly principal: string;
  readonly publicKey: string;
  readonly from?: string;
  /** When sshd stops accepting the key (ISO 8601). */
  readonly expiresAt: string;
}

/** `YYYYMMDDHHMMSSZ`, the UTC form of sshd's `expiry-time=`. */
export function expiryTimeOption(at: Date): string {
  const iso = at.toISOString();
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

/** The authorized-keys line of one entry; throws when any part of it is off the contract. */
export function authorizedKeyLine(entry: AuthorizedKeyEntry): string {
  if (!COMMAND_ID_PATTERN.test(entry.id)) throw new Error(`grant id ${JSON.stringify(entry.id.slice(0, 64))} is malformed`);
  const key = parsePublicKey(entry.publicKey);
  const expires = new Date(entry.expiresAt);
  if (Number.isNaN(expires.getTime())) throw new Error(`expiresAt ${JSON.stringify(entry.expiresAt)} is not a time`);
  // sshd compares whole seconds; rounding up would let a key live up to a second longer than granted.
  const options = [`expiry-time="${expiryTimeOption(new Date(Math.floor(expires.getTime() / 1000) * 1000))}"`];
  if (entry.from !== undefined) options.push(`from="${checkFromPatterns(entry.from)}"`);
  options.push('restrict', 'pty');
  return `${options.join(',')} ${key.text} outpost-grant:${entry.id}`;
}

const renderedLine = /^expiry-time="(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z"(?:,from="([^"]*)")?,restrict,pty (\S+ \S+) outpost-grant:(\S+)$/;

/** The entry of a line `authorizedKeyLine` wrote (its expiry to the second), or undefined for any other line. */
export function parseAuthorizedKeyLine(line: string, principal: string): AuthorizedKeyEntry | undefined {
  const m = renderedLine.exec(line);
  if (!m) return undefined;
  return { id: m[9]!, principal, publicKey: m[8]!, ...(m[7] === undefined ? {} : { from: m[7] }), expiresAt: `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.000Z` };
}

/**
 * The whole file of one principal: its entries, latest expiry first (sshd takes the first line
 * whose key matches, and the same key may be granted twice), one per line.
 */
export function renderAuthorizedKeys(entries: readonly AuthorizedKeyEntry[]): string {
  const sorted = [...entries].sort((a, b) => Date.parse(b.expiresAt) - Date.parse(a.expiresAt) || a.id.localeCompare(b.id));
  const header = '# Written by outpost (just-in-time access grants). Every change here is overwritten.\n';
  return header + sorted.map((entry) => `${authorizedKeyLine(entry)}\n`).join('');
}
