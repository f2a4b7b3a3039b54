/**
 * Signature thresholds and file hashes: the checks behind "arbitrary software attack" and
 * "mix-and-match attack" in the TUF client workflow (spec §5.3.4, §5.4.2, §5.5.2-3, §5.6.2-3).
 *
 * Invariant: a threshold counts distinct *public keys*, not signature entries or key ids. A key
 * that signs twice, or one public key listed in root under two ids, still counts once.
 */
import { createHash } from 'node:crypto';
import { OutpostError } from '../../errors.js';
import { publicIdentity, verifyKeySignature } from '../../trust/index.js';
import type { MetaFile, ParsedMetadata, RootSigned, TopRole } from './schema.js';

/** How many distinct authorized keys validly signed `metadata` for `role` under `root`. */
export function countValidSignatures(root: RootSigned, role: TopRole, metadata: Pick<ParsedMetadata<TopRole>, 'signatures' | 'signedBytes'>): number {
  const authorized = new Set(root.roles[role].keyids);
  const signers = new Set<string>();
  for (const { keyid, sig } of metadata.signatures) {
    if (!authorized.has(keyid)) continue;
    const key = root.keys[keyid];
    // ed25519, ECDSA P-256 and RSA-PSS verify; keys of other schemes in root simply never count.
    const identity = key ? publicIdentity(key) : null;
    if (!key || identity === null || signers.has(identity)) continue;
    if (verifyKeySignature(key, metadata.signedBytes, sig)) signers.add(identity);
  }
  return signers.size;
}

/**
 * Throws unless `metadata` carries a threshold of valid signatures for `role` as `root` (version
 * `root.version`) defines it. No valid signature at all is UPDATE_SIGNATURE (tampered, or signed by
 * keys root does not trust); some but too few is UPDATE_THRESHOLD.
 */
export function requireThreshold(root: RootSigned, role: TopRole, metadata: Pick<ParsedMetadata<TopRole>, 'signatures' | 'signedBytes'>, source: string, rootLabel = `root v${root.version}`): void {
  const { threshold } = root.roles[role];
  const valid = countValidSignatures(root, role, metadata);
  if (valid >= threshold) return;
  if (valid === 0) {
    throw new OutpostError('UPDATE_SIGNATURE', `${source}: no valid signature by a ${role} key of ${rootLabel} (tampered, or signed by an untrusted or revoked key); needs ${threshold}`);
  }
  throw new OutpostError('UPDATE_THRESHOLD', `${source}: signed by ${valid} of the ${threshold} ${role} keys ${rootLabel} requires`);
}

/**
 * Checks `bytes` against a METAFILES or TARGETS entry's length and hashes, when it lists them. A
 * mismatch means the file is not the one the referencing role signed: UPDATE_SIGNATURE.
 */
export function checkMetaFile(bytes: Uint8Array, meta: Pick<MetaFile, 'length' | 'hashes'>, source: string, referrer: string): void {
  if (meta.length !== undefined && bytes.length !== meta.length) {
    throw new OutpostError('UPDATE_SIGNATURE', `${source}: ${bytes.length} bytes, but ${referrer} says ${meta.length} (tampered or replaced)`);
  }
  for (const [algorithm, expected] of Object.entries(meta.hashes ?? {})) {
    let actual: string;
    try {
      actual = createHash(algorithm).update(bytes).digest('hex');
    } catch (err) {
      throw new OutpostError('UPDATE_METADATA_INVALID', `${source}: ${referrer} lists a ${algorithm} hash, which this device cannot compute`, { cause: err });
    }
    if (actual !== expected) throw new OutpostError('UPDATE_SIGNATURE', `${source}: ${algorithm} ${actual} is not the ${expected} ${referrer} signed (tampered or replaced)`);
  }
}

/** sha256 hex of bytes. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
