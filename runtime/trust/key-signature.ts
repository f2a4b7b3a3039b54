/**
 * Verifies a signature by a TUF key of any scheme a device may meet in a root it did not write:
 * `ed25519` (what outpostctl signs with), `ecdsa-sha2-nistp256` (PEM public key, DER
 * signature: the default of python-tuf and tuf-on-ci) and `rsassa-pss-sha256` (PEM public key).
 * All three are verified by node:crypto; ed25519 through ed25519.ts, which takes the raw hex key.
 */
import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { verify as verifyEd25519 } from './ed25519.js';

/** A public key as TUF metadata lists it (spec §4.2 KEY). */
export interface TufKey {
  keytype: string;
  scheme: string;
  keyval: Readonly<Record<string, string>>;
}

/**
 * The identity of a key's public half, so a threshold counts each key once even when root lists
 * it under two ids; null when the key's scheme is not one this device verifies.
 */
export function publicIdentity(key: TufKey): string | null {
  const value = key.keyval.public;
  if (value === undefined) return null;
  if (key.keytype === 'ed25519' && key.scheme === 'ed25519') return value.toLowerCase();
  if (!isEcdsaP256(key) && !isRsaPss(key)) return null;
  // The key itself, not its text: one key in two PEM forms (SPKI, PKCS#1) is still one key.
  const publicKey = parsePublicKey(key, value);
  if (!publicKey) return null;
  const jwk = publicKey.export({ format: 'jwk' });
  return JSON.stringify([jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.n, jwk.e]);
}

/** The node key object of an ECDSA P-256 or RSA key; null when the PEM is not one. */
function parsePublicKey(key: TufKey, pem: string): KeyObject | null {
  try {
    const publicKey = createPublicKey(pem);
    if (isEcdsaP256(key)) return publicKey.asymmetricKeyType === 'ec' && publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1' ? publicKey : null;
    return publicKey.asymmetricKeyType === 'rsa' ? publicKey : null;
  } catch {
    return null;
  }
}

/** Whether `sigHex` is `key`'s valid signature of `message`; false for anything unsupported or malformed. */
export function verifyKeySignature(key: TufKey, message: Uint8Array, sigHex: string): boolean {
  const value = key.keyval.public;
  if (value === undefined) return false;
  if (key.keytype === 'ed25519' && key.scheme === 'ed25519') return verifyEd25519(value, message, sigHex);
  if (!/^(?:[0-9a-f]{2})+$/i.test(sigHex)) return false;
  if (!isEcdsaP256(key) && !isRsaPss(key)) return false;
  const publicKey = parsePublicKey(key, value);
  if (!publicKey) return false;
  try {
    const signature = Buffer.from(sigHex, 'hex');
    if (isEcdsaP256(key)) return verify('sha256', message, { key: publicKey, dsaEncoding: 'der' }, signature);
    return verify('sha256', message, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, signature);
  } catch {
    return false;
  }
}

function isEcdsaP256(key: TufKey): boolean {
  return (key.keytype === 'ecdsa' || key.keytype === 'ecdsa-sha2-nistp256') && key.scheme === 'ecdsa-sha2-nistp256';
}

function isRsaPss(key: TufKey): boolean {
  return key.keytype === 'rsa' && key.scheme === 'rsassa-pss-sha256';
}
