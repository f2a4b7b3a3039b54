/**
 * A realistic rootfs pair for the OTA bench: Debian 12 built with mmdebstrap (`--variant=minbase`
 * plus what a gateway runs), v1 with bookworm's package versions and v2 the same build with a few
 * packages upgraded from bookworm-security — the shape of a real security update.
 *
 * - Both builds use the host's own apt sources (bookworm and bookworm-security must be in them)
 *   with `APT::Default-Release "bookworm"`, so only the packages named in `upgrade` come from
 *   bookworm-security in v2; everything else is the same version in both.
 * - `SOURCE_DATE_EPOCH` is fixed and per-host files (resolv.conf, hostname, ssh host keys) are
 *   removed, so two builds of the same package set are identical and v1 and v2 differ only where
 *   the upgraded packages do (as a reproducible image pipeline would have it). That is the fair
 *   case for image-based deltas, which suffer most from build noise.
 * - The tarballs are cached in /var/cache/outpost-bench (override: OUTPOST_BENCH_CACHE) under a key
 *   of every argument and the apt sources' contents; v1 and v2 are built and cached together, so a
 *   pair never mixes two states of the archive.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';

/** Packages on top of minbase: init, networking, remote access, TLS, and the runtimes outpost and its apps use. */
export const gatewayPackages = ['systemd', 'systemd-sysv', 'udev', 'dbus', 'openssh-server', 'iproute2', 'ca-certificates', 'curl', 'nodejs', 'python3', 'mosquitto'];
/** The upgrade between v1 and v2 (one source package, openssl); OUTPOST_BENCH_UPGRADE overrides (comma-separated binary packages). */
export const defaultUpgrade = ['libssl3', 'openssl'];
/** Fixed build time (2025-01-01T00:00:00Z): reproducible output, see the module comment. */
export const sourceDateEpoch = '1735689600';
const suite = 'bookworm';
const hooks = [
  // Per-host and per-device files do not belong in a fleet image (sshd's keys are made on first boot).
  '--customize-hook=rm -f "$1"/etc/resolv.conf "$1"/etc/ssh/ssh_host_*',
  '--customize-hook=echo gateway > "$1"/etc/hostname',
];

/** A built (or cached) pair. */
export interface RootfsPair {
  v1Tar: string;
  v2Tar: string;
  cacheDir: string;
  /** Whether the pair came from the cache (no build in this run). */
  cached: boolean;
  buildSec: number;
  /** mmdebstrap arguments of each build (the output path replaced by OUT). */
  args: { v1: string[]; v2: string[] };
  upgrade: string[];
}

/** The host's apt source files (passed to mmdebstrap as mirrors). */
function aptSourceFiles(): string[] {
  const files = existsSync('/etc/apt/sources.list') ? ['/etc/apt/sources.list'] : [];
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) for (const name of readdirSync(dir).sort()) if (/\.(list|sources)$/.test(name)) files.push(join(dir, name));
  const text = files.map((f) => readFileSync(f, 'utf8')).join('\n');
  if (!/\bbookworm\b/.test(text) || !/\bbookworm-security\b/.test(text)) {
    throw new Error(`the OTA bench builds Debian 12 from the host's apt sources, but ${files.join(', ') || 'none'} lack bookworm and bookworm-security`);
  }
  return files;
}

function mmdebstrapArgs(out: string, sources: string[], upgrade: string[], fromSecurity: boolean): string[] {
  const include = [...gatewayPackages, ...upgrade.map((p) => (fromSecurity ? `${p}/${suite}-security` : p))];
  return ['--variant=minbase', `--include=${include.join(',')}`, `--aptopt=APT::Default-Release "${suite}"`, ...hooks, suite, out, ...sources];
}

/** Returns the v1/v2 tarballs, building them with mmdebstrap (as root) unless cached. */
export async function debianRootfsPair(log: (line: string) => void): Promise<RootfsPair> {
  const upgrade = (process.env.OUTPOST_BENCH_UPGRADE ?? defaultUpgrade.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  const sources = aptSourceFiles();
  const args = { v1: mmdebstrapArgs('OUT', sources, upgrade, false), v2: mmdebstrapArgs('OUT', sources, upgrade, true) };
  const key = createHash('sha256')
    .update(JSON.stringify({ args, sourceDateEpoch, sources: sources.map((f) => readFileSync(f, 'utf8')) }))
    .digest('hex')
    .slice(0, 16);
  const cacheRoot = process.env.OUTPOST_BENCH_CACHE ?? '/var/cache/outpost-bench';
  const cacheDir = join(cacheRoot, `debian-${suite}-${key}`);
  const pair = { v1Tar: join(cacheDir, 'v1.tar'), v2Tar: join(cacheDir, 'v2.tar'), cacheDir, args, upgrade };
  if (existsSync(pair.v1Tar) && existsSync(pair.v2Tar)) return { ...pair, cached: true, buildSec: 0 };

  const started = performance.now();
  const staging = `${cacheDir}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    for (const version of ['v1', 'v2'] as const) {
      log(`ota: mmdebstrap ${version} (${version === 'v1' ? suite : `${suite} + ${upgrade.join(', ')} from ${suite}-security`}) into ${cacheDir}`);
      const out = join(staging, `${version}.tar`);
      const argv = mmdebstrapArgs(out, sources, upgrade, version === 'v2');
      const r = await execa('mmdebstrap', ['--quiet', ...argv], { env: { SOURCE_DATE_EPOCH: sourceDateEpoch }, reject: false, all: true });
      if (r.exitCode !== 0) {
        throw new Error(`mmdebstrap ${version} failed (${r.exitCode}); is the Debian archive reachable? Output:\n${(r.all ?? '').split('\n').slice(-20).join('\n')}`);
      }
    }
    await writeFile(join(staging, 'args.json'), `${JSON.stringify({ args, sourceDateEpoch, builtAt: new Date().toISOString() }, null, 2)}\n`);
    await rm(cacheDir, { recursive: true, force: true });
    await rename(staging, cacheDir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return { ...pair, cached: false, buildSec: Math.round((performance.now() - started) / 1000) };
}

/** Kernel version of the stand-in kernel (the trees carry no real one; see README). */
export const benchKernelVersion = '6.1.0-bench';

/**
 * Unpacks a rootfs tarball into `dir` in the layout `ostree admin deploy` wants: /etc moved to
 * /usr/etc, no device nodes (OSTree cannot store them; devtmpfs provides /dev), and a stand-in
 * kernel and initramfs under /usr/lib/modules (identical in v1 and v2, as for a package update).
 */
export async function unpackOstreeTree(tar: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await execa('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tar, '-C', dir]);
  for (const entry of await readdir(join(dir, 'dev'))) await rm(join(dir, 'dev', entry), { recursive: true, force: true });
  await rename(join(dir, 'etc'), join(dir, 'usr', 'etc'));
  const modules = join(dir, 'usr', 'lib', 'modules', benchKernelVersion);
  await mkdir(modules, { recursive: true });
  await writeFile(join(modules, 'vmlinuz'), `stand-in kernel ${benchKernelVersion}\n`);
  await writeFile(join(modules, 'initramfs.img'), 'stand-in initramfs\n');
}

/** Installed package versions from a tree's dpkg status file. */
export function dpkgVersions(tree: string): Map<string, string> {
  const status = readFileSync(join(tree, 'var', 'lib', 'dpkg', 'status'), 'utf8');
  const versions = new Map<string, string>();
  for (const stanza of status.split(/\n\n+/)) {
    const name = /^Package: (.+)$/m.exec(stanza)?.[1];
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (name !== undefined && version !== undefined && /^Status: install ok installed$/m.test(stanza)) versions.set(name, version);
  }
  return versions;
}

/** Packages whose version differs between two trees (added and removed ones too). */
export function packageChanges(v1: Map<string, string>, v2: Map<string, string>): { name: string; from: string | null; to: string | null }[] {
  const names = [...new Set([...v1.keys(), ...v2.keys()])].sort();
  return names.filter((n) => v1.get(n) !== v2.get(n)).map((name) => ({ name, from: v1.get(name) ?? null, to: v2.get(name) ?? null }));
}
