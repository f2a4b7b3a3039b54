/**
 * Offline bundles (a tar written by `outpostctl release bundle`), handled as the untrusted input
 * they are: listed before anything is unpacked (regular files and directories only, no absolute
 * or `..` names, the whole within a size budget), then unpacked in two steps: the manifest and the
 * metadata, which TUF verifies, and only then the one delta or repository the verified release
 * needs. `--force-local`: a file name with a colon is a file, not a remote host.
 */
import { z } from 'zod';
import { OutpostError } from '../errors.js';
import type { Exec } from '../platform/index.js';

/** `bundle.json`: which target the bundle carries. */
export const bundleManifestSchema = z.strictObject({ schema: z.literal('outpost.bundle/1'), target: z.string() });

/** One member of a bundle: `path` without a leading `./`, `member` as the archive names it. */
export interface BundleEntry {
  path: string;
  member: string;
  size: number;
  directory: boolean;
}

const tarTimeoutMs = 10 * 60_000;
/** `tar -tv` with GNU tar's default format: mode, owner/group, size, date, time, name. */
const listLine = /^([-d])[-rwxsStT]{9}\S*\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(.+)$/;

/** Lists `file`; refuses links, devices, absolute and `..` names: nothing of it can land outside the unpack directory. */
export async function listBundle(exec: Exec, file: string): Promise<BundleEntry[]> {
  // Numeric owners: a name with spaces or a newline in a PAX header could forge listing lines.
  const { stdout } = await exec.run('tar', ['-tvf', file, '--force-local', '--numeric-owner', '--quoting-style=escape'], { timeoutMs: tarTimeoutMs });
  const entries: BundleEntry[] = [];
  for (const line of stdout.split('\n').filter((l) => l.trim() !== '')) {
    const m = listLine.exec(line);
    if (!m) throw new OutpostError('UPDATE_REFUSED', `bundle ${file}: holds something other than files and directories (${line.trim()})`);
    const member = m[3] ?? '';
    const path = member.replace(/^\.\//, '').replace(/\/$/, '');
    if (member.startsWith('/') || path.split('/').includes('..')) throw new OutpostError('UPDATE_REFUSED', `bundle ${file}: member ${member} would land outside the bundle directory`);
    if (path === '' || path === '.') continue;
    entries.push({ path, member, size: Number(m[2]), directory: m[1] === 'd' });
  }
  return entries;
}

const extract = (file: string, dir: string) => ['-xf', file, '--force-local', '-C', dir, '--no-same-owner', '--no-same-permissions'];

/**
 * Unpacks the files among `entries` that `wanted` picks into `dir`, exactly those: no recursion, so
 * a name cannot pull in members below it (names on stdin: no argument-length limit).
 */
export async function unpackBundle(exec: Exec, file: string, dir: string, entries: readonly BundleEntry[], wanted: (path: string) => boolean): Promise<void> {
  const members = entries.filter((e) => !e.directory && wanted(e.path)).map((e) => e.member);
  if (members.length === 0) return;
  await exec.run('tar', [...extract(file, dir), '--no-recursion', '--verbatim-files-from', '-T', '-'], { timeoutMs: tarTimeoutMs, input: `${members.join('\n')}\n` });
}

/**
 * Unpacks one directory of the bundle with everything below it (an OSTree repository holds a
 * hundred thousand objects: naming each would cost tar a scan of the archive per name). Every
 * member below it was listed, so it is budgeted and holds no links.
 */
export async function unpackBundleDirectory(exec: Exec, file: string, dir: string, entries: readonly BundleEntry[], path: string): Promise<void> {
  const entry = entries.find((e) => e.directory && e.path === path);
  if (!entry) throw new OutpostError('UPDATE_REFUSED', `bundle ${file}: has no ${path}/ directory`);
  await exec.run('tar', [...extract(file, dir), entry.member], { timeoutMs: tarTimeoutMs });
}
