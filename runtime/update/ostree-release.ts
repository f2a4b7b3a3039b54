/**
 * Release-side OSTree helpers for `outpostctl` and the test/demo world: make a build repo,
 * commit a tree, generate the static delta file outpost ships.
 *
 * Delta flags are DESIGN.md's measured choice: `--inline --min-fallback-size=0` with bsdiff left
 * on gave the smallest update of everything tried (1.58 MB for a minor update of a 306 MB Debian
 * rootfs), and `--filename` writes one self-contained file the device downloads itself.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { OutpostError } from '../errors.js';
import type { Exec } from '../platform/index.js';
import { isCommitChecksum } from './ostree.js';

const env = { LC_ALL: 'C' };

async function ostree(exec: Exec, what: string, args: string[]): Promise<string> {
  try {
    return (await exec.run('ostree', args, { env })).stdout;
  } catch (err) {
    throw new OutpostError('OSTREE_FAILED', `${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Creates an OSTree repo at `path` (default mode `archive`, the one served over HTTP). */
export async function initRepo(exec: Exec, options: { path: string; mode?: 'archive' | 'bare' | 'bare-user' }): Promise<void> {
  await mkdir(options.path, { recursive: true });
  await ostree(exec, `initialising repo ${options.path}`, ['init', `--repo=${options.path}`, `--mode=${options.mode ?? 'archive'}`]);
}

/** What to commit: a directory tree onto a branch, with a subject and string metadata. */
export interface CommitTreeOptions {
  repo: string;
  branch: string;
  /** Directory whose contents become the commit's root. */
  tree: string;
  subject: string;
  /** `version` metadata, shown by `ostree admin status`. */
  version?: string;
  metadata?: Record<string, string>;
}

/** Commits a directory tree; resolves to the new commit checksum. */
export async function commitTree(exec: Exec, options: CommitTreeOptions): Promise<string> {
  const meta = { ...options.metadata, ...(options.version === undefined ? {} : { version: options.version }) };
  const out = await ostree(exec, `committing ${options.tree} to ${options.branch}`, [
    'commit',
    `--repo=${options.repo}`,
    `--branch=${options.branch}`,
    `--tree=dir=${options.tree}`,
    `--subject=${options.subject}`,
    ...Object.entries(meta).map(([k, v]) => `--add-metadata-string=${k}=${v}`),
  ]);
  const commit = out.trim();
  if (!isCommitChecksum(commit)) throw new OutpostError('OSTREE_FAILED', `ostree commit printed no checksum: ${JSON.stringify(out)}`);
  return commit;
}

/** Resolves a ref or commit in `repo` to a commit checksum. */
export async function revParse(exec: Exec, repo: string, rev: string): Promise<string> {
  return (await ostree(exec, `resolving ${rev} in ${repo}`, ['rev-parse', `--repo=${repo}`, rev])).trim();
}

/** What `generateStaticDelta` produces from and to. */
export interface StaticDeltaOptions {
  repo: string;
  /** Source commit (what the device runs). */
  from: string;
  /** Target commit (the release). */
  to: string;
  /** File to write; its directory is created. */
  outFile: string;
}

/** Generates one inline static delta file; resolves to its path and size in bytes. */
export async function generateStaticDelta(exec: Exec, options: StaticDeltaOptions): Promise<{ outFile: string; bytes: number }> {
  await mkdir(dirname(options.outFile), { recursive: true });
  await ostree(exec, `generating static delta ${options.from} -> ${options.to}`, [
    'static-delta',
    'generate',
    `--repo=${options.repo}`,
    '--inline',
    '--min-fallback-size=0',
    `--from=${options.from}`,
    `--to=${options.to}`,
    `--filename=${options.outFile}`,
  ]);
  return { outFile: options.outFile, bytes: (await stat(options.outFile)).size };
}
