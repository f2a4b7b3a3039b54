/**
 * Durable whole-file writes: a reader (or a power cut) sees the old file or the new one, never a
 * torn one. Write a temporary file beside the target with its final mode, fsync it, move it into
 * place, fsync the directory so the rename itself is on disk.
 */
import { randomBytes } from 'node:crypto';
import { link, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Options for {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** File mode, applied explicitly so the umask cannot loosen or tighten it. */
  mode: number;
  /** Replace an existing file (default true). When false an existing file is an EEXIST error. */
  overwrite?: boolean;
}

/** Writes `data` to `path` atomically and durably. Errors are the raw fs errors (callers add context). */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  // 'wx' + the final mode: the secret never exists on disk with looser permissions.
  const handle = await open(tmp, 'wx', options.mode);
  try {
    try {
      await handle.writeFile(data);
      await handle.chmod(options.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.overwrite === false) {
      // link() fails with EEXIST instead of replacing: no check-then-write race.
      await link(tmp, path);
      await unlink(tmp);
    } else {
      await rename(tmp, path);
    }
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/** fsyncs a directory, so a rename or new entry in it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

