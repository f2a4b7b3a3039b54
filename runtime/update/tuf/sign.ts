/** Signing metadata (spec §4.2: signatures over the canonical JSON of `signed`) and the file form. */
import { canonicalBytes, sign, type PrivateKey, type Signature } from '../../trust/index.js';

/** A signed metadata file before serialization. */
export interface Envelope<T> {
  signatures: Signature[];
  signed: T;
}

/** Signs `signed` with each key once (duplicates by key id are dropped). */
export function signMetadata<T extends object>(signed: T, keys: readonly PrivateKey[]): Envelope<T> {
  const bytes = canonicalBytes(signed);
  const seen = new Set<string>();
  const signatures: Signature[] = [];
  for (const key of keys) {
    if (seen.has(key.keyid)) continue;
    seen.add(key.keyid);
    signatures.push(sign(key, bytes));
  }
  return { signatures, signed };
}

/**
 * The bytes written to disk. Indented for people reading the repository; verifiers re-canonicalize
 * `signed`, so the layout does not affect signatures.
 */
export function serializeMetadata(envelope: Envelope<unknown>): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(envelope, null, 2)}\n`);
}
