/** Checks a local file against the length and sha256 signed metadata promised, before it is used. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { OutpostError } from '../errors.js';

/** Resolves when `path` has exactly `length` bytes hashing to `sha256`; DOWNLOAD_VERIFY otherwise. */
export async function verifyFile(path: string, length: number, sha256: string): Promise<void> {
  const size = await stat(path).then(
    (s) => s.size,
    () => null,
  );
  if (size === null) throw new OutpostError('DOWNLOAD_VERIFY', `${path}: missing (signed metadata lists it with ${length} bytes)`);
  if (size !== length) throw new OutpostError('DOWNLOAD_VERIFY', `${path}: ${size} bytes, signed metadata says ${length} (truncated or tampered)`);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  const actual = hash.digest('hex');
  if (actual !== sha256) throw new OutpostError('DOWNLOAD_VERIFY', `${path}: sha256 ${actual} does not match the signed ${sha256} (tampered or corrupt)`);
}
