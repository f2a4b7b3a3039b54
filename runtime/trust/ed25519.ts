/**
 * ed25519 keys, signatures and TUF key ids. Keys are made and signed with tweetnacl (pure JS; only
 * outpostctl and tests sign); signatures are verified with node:crypto (OpenSSL), because the
 * daemon runs node with `--jitless`, where tweetnacl's verification takes ~85 ms and OpenSSL's
 * ~0.07 ms (bench/README.md, remote commands).
 *
 * A key's public form is the TUF key object (spec §4.2 "File formats: general principles", KEYTYPE
 * "ed25519": `keyval.public` is the 32-byte raw public key in hex). Its key id is the sha256 hex of
 * that object's canonical JSON, as the spec defines KEYID, so ids match those tuf-js and python-tuf
 * compute. Private keys are kept as the 32-byte seed (securesystemslib's `keyval.private`).
 */
import { createHash, createPublicKey, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { createRequire } from 'node:module';
import type Nacl from 'tweetnacl';
import { canonicalBytes } from './canonical-json.js';

const publicKeyLength = 32;
const signatureLength = 64;
const seedLength = 32;

let naclModule: typeof Nacl | undefined;

/**
 * tweetnacl, loaded on first use: only making keys and signing need it (outpostctl, tests), and
 * the daemon, which only verifies, would otherwise hold ~200 KiB of heap for it under --jitless.
 */
function nacl(): typeof Nacl {
  naclModule ??= createRequire(import.meta.url)('tweetnacl') as typeof Nacl;
  return naclModule;
}

/** The TUF public key object of an ed25519 key, as root metadata lists it. */
export interface Ed25519KeyObject {
  keytype: 'ed25519';
  scheme: 'ed25519';
  keyval: { public: string };
}

/** A public key with its TUF key id. */
export interface PublicKey {
  readonly keyid: string;
  readonly key: Ed25519KeyObject;
  /** The 32 raw public key bytes. */
  readonly publicKey: Uint8Array;
}

/** A signing key: its public half plus the 64-byte tweetnacl secret key (seed ‖ public). */
export interface PrivateKey extends PublicKey {
  readonly secretKey: Uint8Array;
}

/** A signature as TUF metadata carries it (spec §4.2: `{keyid, sig}` with `sig` in hex). */
export interface Signature {
  keyid: string;
  sig: string;
}

const hexPattern = /^(?:[0-9a-fA-F]{2})*$/;

/** Lower-case hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Bytes of a hex string (either case) of exactly `length` bytes, or undefined when it is not one. */
export function fromHex(hex: string, length: number): Uint8Array | undefined {
  if (hex.length !== length * 2 || !hexPattern.test(hex)) return undefined;
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** The TUF key object for a raw public key. */
export function keyObject(publicKey: Uint8Array): Ed25519KeyObject {
  return { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: toHex(publicKey) } };
}

/** KEYID per the TUF spec: sha256 (hex) of the canonical JSON of the public key object. */
export function keyIdOf(key: Ed25519KeyObject): string {
  return createHash('sha256').update(canonicalBytes(key)).digest('hex');
}

/** A {@link PublicKey} for 32 raw public key bytes. */
export function publicKeyFromBytes(publicKey: Uint8Array): PublicKey {
  if (publicKey.length !== publicKeyLength) throw new TypeError(`an ed25519 public key has ${publicKeyLength} bytes, got ${publicKey.length}`);
  const key = keyObject(publicKey);
  return Object.freeze({ keyid: keyIdOf(key), key, publicKey: Uint8Array.from(publicKey) });
}

/** The signing key for a 32-byte seed (deterministic: the same seed gives the same key). */
export function privateKeyFromSeed(seed: Uint8Array): PrivateKey {
  if (seed.length !== seedLength) throw new TypeError(`an ed25519 seed has ${seedLength} bytes, got ${seed.length}`);
  const pair = nacl().sign.keyPair.fromSeed(seed);
  return Object.freeze({ ...publicKeyFromBytes(pair.publicKey), secretKey: pair.secretKey });
}

/** A new random signing key (seed from the OS CSPRNG). */
export function generateKey(): PrivateKey {
  return privateKeyFromSeed(new Uint8Array(randomBytes(seedLength)));
}

/** The 32-byte seed of a signing key, as key files store it. */
export function seedOf(key: PrivateKey): Uint8Array {
  return key.secretKey.slice(0, seedLength);
}

/** Only the public half, safe to hand out. */
export function publicOf(key: PublicKey): PublicKey {
  return Object.freeze({ keyid: key.keyid, key: key.key, publicKey: key.publicKey });
}

/** Signs `message`, returning the TUF signature object. */
export function sign(key: PrivateKey, message: Uint8Array): Signature {
  return { keyid: key.keyid, sig: toHex(nacl().sign.detached(message, key.secretKey)) };
}

/**
 * Whether `sigHex` is a valid signature of `message` by `publicKeyHex`. Malformed hex or lengths
 * are simply invalid (false): a signature from the network is data, not a reason to throw.
 *
 * OpenSSL is stricter than tweetnacl in one place: it rejects a signature whose S is not reduced
 * (S >= L), which tweetnacl accepts as the same signature as S - L (test/unit/trust/ed25519-verify.test.ts).
 * A signer following RFC 8032 never produces one, so only malleated copies are refused.
 *
 * The key object is built per call, not cached: a cache saves ~0.05 ms a verification under
 * `--jitless`, under 1 % of a command's round trip, and would be one more bounded structure.
 */
export function verify(publicKeyHex: string, message: Uint8Array, sigHex: string): boolean {
  const publicKey = fromHex(publicKeyHex, publicKeyLength);
  const signature = fromHex(sigHex, signatureLength);
  if (!publicKey || !signature) return false;
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' });
    return cryptoVerify(null, message, key, signature);
  } catch {
    // Whatever OpenSSL makes of the bytes, a signature from the network must not throw.
    return false;
  }
}
