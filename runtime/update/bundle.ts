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

/** What {@link listBundle} found: the budget, the few small members by name, and the repository as a whole. */
export interface BundleListing {
  /** Every member's size added up: what unpacking all of it would take. */
  bytes: number;
  /** Members outside `repo/` (manifest, metadata, deltas). */
  entries: BundleEntry[];
  /** How the archive names the `repo/` directory, if it has one (its objects are only counted). */
  repoMember?: string;
}

/** A release needs a few hundred members outside `repo/` (root versions, deltas); more is not a bundle outpost wrote. */
export const maxListedMembers = 4096;

/**
 * Lists `file` (named `shown` in messages) line by line: a full repository is a hundred thousand
 * members. Refuses links, devices, absolute and `..` names: nothing can land outside the unpack
 * directory.
 */
export async function listBundle(exec: Exec, file: string, shown = file): Promise<BundleListing> {
  const listing: BundleListing = { bytes: 0, entries: [] };
  let refusal: string | undefined;
  const take = (line: string) => {
    if (refusal !== undefined || line.trim() === '') return;
    const m = listLine.exec(line);
    if (!m) return void (refusal = `holds something other than files and directories (${line.trim()})`);
    const member = m[3] ?? '';
    const path = member.replace(/^\.\//, '').replace(/\/$/, '');
    if (member.startsWith('/') || path.split('/').includes('..')) return void (refusal = `member ${member} would land outside the bundle directory`);
    if (path === '' || path === '.') return;
    const entry = { path, member, size: Number(m[2]), directory: m[1] === 'd' };
    listing.bytes += entry.size;
    if (path === 'repo' && entry.directory) listing.repoMember = member;
    else if (!path.startsWith('repo/')) {
      if (listing.entries.length === maxListedMembers) return void (refusal = `has more than ${maxListedMembers} members outside repo/`);
      listing.entries.push(entry);
    }
  };
  // Numeric owners: a name with spaces or a newline in a PAX header could forge listing lines.
  await exec.run('tar', ['-tvf', file, '--force-local', '--numeric-owner', '--quoting-style=escape'], { timeoutMs: tarTimeoutMs, stdout: take });
  if (refusal !== undefined) throw new OutpostError('UPDATE_REFUSED', `bundle ${shown}: ${refusal}`);
  return listing;
}

const extract = (file: string, dir: string) => ['-xf', file, '--force-local', '-C', dir, '--no-same-owner', '--no-same-permissions'];

/**
 * Unpacks the files among `entries` that `wanted` picks into `dir`, exactly those: no recursion, so
 * a name cannot pull in members below it (names on stdin: no argument-length limit).
 */
export async function unpackBundle(exec: Exec, file: string, dir: string, listing: BundleListing, wanted: (path: string) => boolean): Promise<void> {
  const members = listing.entries.filter((e) => !e.directory && wanted(e.path)).map((e) => e.member);
  if (members.length === 0) return;
  await exec.run('tar', [...extract(file, dir), '--no-recursion', '--verbatim-files-from', '-T', '-'], { timeoutMs: tarTimeoutMs, input: `${members.join('\n')}\n` });
}

/**
 * Unpacks `repo/` with everything below it (an OSTree repository holds a hundred thousand objects:
 * naming each would cost tar a scan of the archive per name). Every member below it was listed, so
 * it is budgeted and holds no links.
 */
export async function unpackBundleRepo(exec: Exec, file: string, dir: string, listing: BundleListing, shown = file): Promise<void> {
  if (listing.repoMember === undefined) throw new OutpostError('UPDATE_REFUSED', `bundle ${shown}: has no repo/ directory`);
  await exec.run('tar', [...extract(file, dir), listing.repoMember], { timeoutMs: tarTimeoutMs });
}
