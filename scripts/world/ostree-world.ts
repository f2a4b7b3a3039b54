/**
 * A temp OSTree world for tests and the demo: a build repo (archive mode, served over HTTP with
 * the delta files), commits of small synthetic OS trees v1, v2, ..., and a device sysroot with v1
 * deployed — all real ostree, no mocks.
 *
 * What `ostree admin deploy` (2022.7) needs in a never-booted temp sysroot, found by trying:
 * - a kernel and initramfs at `usr/lib/modules/<kver>/vmlinuz` and `initramfs.img` (fake bytes do);
 * - `usr/lib/os-release` (or `usr/etc/os-release`) with `ID` or `PRETTY_NAME`, else "Installing
 *   kernel: No PRETTY_NAME or ID in /etc/os-release";
 * - `usr/etc` for the /etc 3-way merge; no bootloader config at all: with none detected ostree
 *   writes BLS entries under `boot/loader.N/entries` and swaps the `boot/loader` symlink itself.
 * Nothing else (no root, /proc or namespaces beyond running as root for ownership).
 *
 * Invariants: everything lives under one temp dir that `close()` removes (after clearing the
 * immutable flag ostree puts on deployment roots); the optional separate
 * /boot (an ext4 image loop-mounted on `<sysroot>/boot`, so the FIFREEZE path runs for real) is
 * unmounted by `close()` and on process exit.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { silentLogger, type Logger } from '../../runtime/logs/index.js';
import { createExec, type Exec } from '../../runtime/platform/index.js';
import { createOstree, type Ostree, type OstreeOptions } from '../../runtime/update/ostree.js';
import { commitTree, generateStaticDelta, initRepo } from '../../runtime/update/ostree-release.js';
import { startFileServer, type FileServer } from './file-server.js';

/** How to build the world. */
export interface OstreeWorldOptions {
  /** Stateroot name on the device; default `outpost-demo`. */
  osname?: string;
  /** Branch the build repo commits to; default `outpost/demo/x86_64`. */
  branch?: string;
  /** Versions committed at start; the first is deployed on the device. Default [1, 2]. */
  versions?: number[];
  /** Mount a 32 MiB ext4 image on `<sysroot>/boot` (needs root and loop devices). */
  separateBoot?: boolean;
  log?: Logger;
}

/** Extra content for one version's tree: path (relative to the tree root) → file content. */
export type ExtraFiles = Record<string, string | Buffer>;

/** A running world. */
export interface OstreeWorld {
  readonly dir: string;
  readonly exec: Exec;
  readonly osname: string;
  readonly branch: string;
  /** The archive repo, served at `${server.url}/repo`. */
  readonly buildRepo: string;
  /** Served directory: `repo/` and `deltas/`. */
  readonly www: string;
  readonly server: FileServer;
  /** `${server.url}/repo`, the pull fallback's remote URL. */
  readonly repoUrl: string;
  readonly sysroot: string;
  /** Whether `<sysroot>/boot` is a separate mounted filesystem. */
  readonly separateBoot: boolean;
  /** Commit checksum of each committed version. */
  readonly commits: Map<number, string>;
  /** The commit of a version; throws if it was never committed. */
  commit(version: number): string;
  /** Commits a synthetic tree for `version` (with `extra` files) on the branch; resolves to its checksum. */
  addVersion(version: number, extra?: ExtraFiles): Promise<string>;
  /** Generates the inline delta from → to into `www/deltas/` and returns its path, URL and size. */
  delta(from: number, to: number): Promise<{ file: string; url: string; bytes: number }>;
  /** An adapter on the device sysroot. */
  ostree(options?: Partial<OstreeOptions>): Ostree;
  close(): Promise<void>;
}

/** Kernel version of the fake kernel in every tree. */
export const worldKernelVersion = '6.1.0-outpost';

/** Deterministic pseudo-random bytes (xorshift32), so trees differ only where a version says. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Writes an OSTree-conformant synthetic OS tree for `version` into `dir`. */
export async function writeTree(dir: string, version: number, extra: ExtraFiles = {}): Promise<void> {
  const modules = join(dir, 'usr/lib/modules', worldKernelVersion);
  // The same kernel in every version, so deployments share one /boot directory like real minor updates.
  const appBin = pseudoRandomBytes(128 * 1024, 7);
  appBin.write(`outpost-world-app version ${version}\n`, 4096 * (version % 16)); // a small in-place change: bsdiff territory
  const files: ExtraFiles = {
    [join(modules, 'vmlinuz')]: `fake kernel ${worldKernelVersion}\n`,
    [join(modules, 'initramfs.img')]: 'fake initramfs\n',
    [join(dir, 'usr/lib/os-release')]: `ID=outpost-demo\nNAME="Outpost demo"\nPRETTY_NAME="Outpost demo v${version}"\nVERSION_ID=${version}\n`,
    [join(dir, 'usr/etc/outpost-release')]: `version=${version}\n`,
    [join(dir, 'usr/etc/hostname')]: 'gateway\n',
    [join(dir, 'usr/share/outpost-world/base.bin')]: pseudoRandomBytes(256 * 1024, 1),
    [join(dir, 'usr/share/outpost-world/app.bin')]: appBin,
    [join(dir, 'usr/bin/outpost-world-app')]: `#!/bin/sh\necho outpost-world-app ${version}\n`,
  };
  for (const [path, content] of Object.entries(extra)) files[join(dir, path)] = content;
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(path), { recursive: true });
    // Scripts (`#!`) are executable, so a version can ship e.g. a failing health check.
    const script = (typeof content === 'string' ? content : content.toString('latin1', 0, 2)).startsWith('#!');
    await writeFile(path, content, { mode: script ? 0o755 : 0o644 });
  }
}

function mountBoot(image: string, target: string): void {
  execFileSync('truncate', ['-s', '32M', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', image]);
  execFileSync('mount', ['-o', 'loop', image, target]);
}

/**
 * ostree sets the immutable flag (chattr +i) on every deployment root, so `rm -r` fails with
 * EPERM until it is cleared.
 */
async function unlockDeployments(sysroot: string): Promise<void> {
  const base = join(sysroot, 'ostree/deploy');
  for (const os of await readdir(base).catch(() => [])) {
    const deployDir = join(base, os, 'deploy');
    for (const entry of await readdir(deployDir, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) execFileSync('chattr', ['-i', join(deployDir, entry.name)]);
    }
  }
}

/** Builds the world: build repo with the given versions, HTTP server, sysroot with the first deployed. */
export async function createOstreeWorld(options: OstreeWorldOptions = {}): Promise<OstreeWorld> {
  const log = options.log ?? silentLogger;
  const exec = createExec(log);
  const osname = options.osname ?? 'outpost-demo';
  const branch = options.branch ?? 'outpost/demo/x86_64';
  const versions = options.versions ?? [1, 2];
  const dir = await mkdtemp(join(tmpdir(), 'outpost-ostree-'));
  const www = join(dir, 'www');
  const buildRepo = join(www, 'repo');
  const sysroot = join(dir, 'sysroot');
  const commits = new Map<number, string>();
  let server: FileServer | undefined;
  let bootMounted = false;
  const unmount = (): void => {
    if (!bootMounted) return;
    bootMounted = false;
    try {
      execFileSync('umount', [join(sysroot, 'boot')]);
    } catch {
      execFileSync('umount', ['-l', join(sysroot, 'boot')]);
    }
  };
  process.once('exit', unmount);
  const close = async (): Promise<void> => {
    await server?.close();
    unmount();
    await unlockDeployments(sysroot);
    process.removeListener('exit', unmount);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await initRepo(exec, { path: buildRepo, mode: 'archive' });
    const addVersion = async (version: number, extra?: ExtraFiles): Promise<string> => {
      const tree = join(dir, 'trees', `v${version}`);
      await rm(tree, { recursive: true, force: true });
      await writeTree(tree, version, extra);
      const commit = await commitTree(exec, { repo: buildRepo, branch, tree, subject: `outpost demo v${version}`, version: String(version) });
      commits.set(version, commit);
      return commit;
    };
    for (const v of versions) await addVersion(v);
    const first = versions[0];
    if (first === undefined) throw new Error('createOstreeWorld needs at least one version');

    await mkdir(sysroot);
    await exec.run('ostree', ['admin', 'init-fs', sysroot]);
    if (options.separateBoot === true) {
      mountBoot(join(dir, 'boot.ext4'), join(sysroot, 'boot'));
      bootMounted = true;
    }
    await exec.run('ostree', ['admin', 'os-init', `--sysroot=${sysroot}`, osname]);
    const firstCommit = commits.get(first) ?? '';
    await exec.run('ostree', ['pull-local', `--repo=${join(sysroot, 'ostree/repo')}`, buildRepo, firstCommit]);
    await exec.run('ostree', ['admin', 'deploy', `--sysroot=${sysroot}`, `--os=${osname}`, firstCommit]);
    server = await startFileServer({ root: www });
    const srv = server;
    const commitOf = (version: number): string => {
      const c = commits.get(version);
      if (c === undefined) throw new Error(`version ${version} was not committed`);
      return c;
    };

    return {
      dir,
      exec,
      osname,
      branch,
      buildRepo,
      www,
      server: srv,
      repoUrl: `${srv.url}/repo`,
      sysroot,
      separateBoot: bootMounted,
      commits,
      commit: commitOf,
      addVersion,
      async delta(from, to) {
        const name = `${from}-${to}.delta`;
        const file = join(www, 'deltas', name);
        const out = await generateStaticDelta(exec, { repo: buildRepo, from: commitOf(from), to: commitOf(to), outFile: file });
        return { file, url: `${srv.url}/deltas/${name}`, bytes: out.bytes };
      },
      ostree(overrides = {}) {
        return createOstree({ exec, log, sysroot, osname, ...overrides });
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
