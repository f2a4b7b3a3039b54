/**
 * Key files on the operator's machine (and the device's command key).
 *
 * Private key file: JSON `{keytype, scheme, keyid, keyval: {public, private}}`, both halves in hex,
 * `private` the 32-byte seed (securesystemslib's layout). Written atomically with mode 0600 and
 * never over an existing file unless asked. Reading one that group or others may access is an
 * error naming the file: a signing key that leaked is worse than one that failed to load.
 * Public key file: the TUF key object plus `keyid`, mode 0644, safe to publish.
 */
import { readFile, stat } from 'node:fs/promises';
import { z } from 'zod';
import { OutpostError } from '../errors.js';
import { writeFileAtomic } from '../platform/atomic-write.js';
import { fromHex, privateKeyFromSeed, publicKeyFromBytes, seedOf, toHex, type PrivateKey, type PublicKey } from './ed25519.js';

/** Key files are tiny; anything larger is not one (checked before parsing). */
const maxKeyFileBytes = 64 * 1024;

const hex = z.string().regex(/^[0-9a-fA-F]+$/, 'must be hex');
const publicFileSchema = z.object({
  keytype: z.literal('ed25519'),
  scheme: z.literal('ed25519'),
  keyid: z.string().optional(),
  keyval: z.object({ public: hex }),
});
const privateFileSchema = publicFileSchema.extend({ keyval: z.object({ public: hex, private: hex }) });

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    const info = await stat(path);
    if (info.size > maxKeyFileBytes) throw new OutpostError('KEY_FILE', `${what} ${path} is ${info.size} bytes, larger than a key file can be (${maxKeyFileBytes})`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof OutpostError) throw err;
    throw new OutpostError('KEY_FILE', `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new OutpostError('KEY_FILE', `${what} ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

function invalid(path: string, what: string, detail: string): OutpostError {
  return new OutpostError('KEY_FILE', `${what} ${path} is not a valid ed25519 key file: ${detail}`);
}

function checkKeyId(path: string, what: string, stated: string | undefined, key: PublicKey): void {
  if (stated !== undefined && stated !== key.keyid) throw invalid(path, what, `its keyid ${stated} is not the key's id ${key.keyid}`);
}

/** Writes a private key file (mode 0600). Refuses to replace an existing file unless `overwrite`. */
export async function writePrivateKeyFile(path: string, key: PrivateKey, options: { overwrite?: boolean } = {}): Promise<void> {
  const body = { keytype: 'ed25519', scheme: 'ed25519', keyid: key.keyid, keyval: { public: toHex(key.publicKey), private: toHex(seedOf(key)) } };
  await writeKeyFile(path, `${JSON.stringify(body, null, 2)}\n`, 0o600, options.overwrite ?? false, 'private key file');
}

/** Writes a public key file (mode 0644). Refuses to replace an existing file unless `overwrite`. */
export async function writePublicKeyFile(path: string, key: PublicKey, options: { overwrite?: boolean } = {}): Promise<void> {
  const body = { ...key.key, keyid: key.keyid };
  await writeKeyFile(path, `${JSON.stringify(body, null, 2)}\n`, 0o644, options.overwrite ?? false, 'public key file');
}

async function writeKeyFile(path: string, text: string, mode: number, overwrite: boolean, what: string): Promise<void> {
  try {
    await writeFileAtomic(path, text, { mode, overwrite });
  } catch (err) {
    const detail = (err as NodeJS.ErrnoException).code === 'EEXIST' ? 'it already exists (keys are never overwritten silently)' : (err as Error).message;
    throw new OutpostError('KEY_FILE', `cannot write ${what} ${path}: ${detail}`, { cause: err });
  }
}

/** Reads a private key file, refusing one that group or others can access. */
export async function readPrivateKeyFile(path: string): Promise<PrivateKey> {
  const what = 'private key file';
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch (err) {
    throw new OutpostError('KEY_FILE', `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    throw new OutpostError('KEY_FILE', `${what} ${path} has mode ${mode.toString(8).padStart(4, '0')}: group or others may read it; run chmod 600 ${path} (and consider the key exposed)`);
  }
  const parsed = privateFileSchema.safeParse(await readJson(path, what));
  if (!parsed.success) throw invalid(path, what, parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
  const seed = fromHex(parsed.data.keyval.private, 32);
  if (!seed) throw invalid(path, what, 'keyval.private is not a 32-byte hex seed');
  const key = privateKeyFromSeed(seed);
  if (toHex(key.publicKey) !== parsed.data.keyval.public.toLowerCase()) throw invalid(path, what, 'keyval.public does not belong to keyval.private');
  checkKeyId(path, what, parsed.data.keyid, key);
  return key;
}

/** Reads a public key file (or a private one, taking only its public half). */
export async function readPublicKeyFile(path: string): Promise<PublicKey> {
  const what = 'public key file';
  const parsed = publicFileSchema.safeParse(await readJson(path, what));
  if (!parsed.success) throw invalid(path, what, parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '));
  const bytes = fromHex(parsed.data.keyval.public, 32);
  if (!bytes) throw invalid(path, what, 'keyval.public is not a 32-byte hex key');
  const key = publicKeyFromBytes(bytes);
  checkKeyId(path, what, parsed.data.keyid, key);
  return key;
}
