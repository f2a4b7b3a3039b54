/** Trust: canonical JSON, ed25519 keys and signatures (tweetnacl signs, node:crypto verifies), verification of ECDSA P-256 and RSA-PSS keys too, key files. */
export { canonicalize, canonicalBytes, CanonicalJsonError } from './canonical-json.js';
export {
  generateKey,
  privateKeyFromSeed,
  publicKeyFromBytes,
  publicOf,
  seedOf,
  keyObject,
  keyIdOf,
  sign,
  verify,
  toHex,
  fromHex,
  type Ed25519KeyObject,
  type PublicKey,
  type PrivateKey,
  type Signature,
} from './ed25519.js';
export { readPrivateKeyFile, readPublicKeyFile, writePrivateKeyFile, writePublicKeyFile } from './key-files.js';
export { publicIdentity, verifyKeySignature, type TufKey } from './key-signature.js';
