/**
 * The system-test gateway image, built once and cached outside the checkout by a hash of its
 * inputs (`$OUTPOST_SYSTEM_CACHE`, default /var/cache/outpost-system). Two stages, so changing
 * outpost's code re-runs only the fast one:
 *   rootfs-<hash>/  mmdebstrap output; hash of image/rootfs.sh (the package list lives there)
 *   image-<hash>/   OSTree build repo (v1..v12), disk.qcow2 with v1 deployed, TUF keys + root,
 *                   broker PKI; hash of the rootfs hash, build-image.sh, overlay/, grub.cfg, the
 *                   compiled outpost (dist/runtime, native addon, lockfile) and /usr/bin/node.
 * The cache key is what makes a second run start in seconds; a half-built stage is never used
 * (each stage is built in a .tmp dir and renamed).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rename, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { issueCert, createPki } from '../../../scripts/world/pki.js';

/** Repository root (test/system/lib -> ../../..). */
export const repoRoot = join(import.meta.dirname, '..', '..', '..');
const imageDir = join(repoRoot, 'test', 'system', 'image');

/** Device identity and addresses baked into the image; the rig's forwards use the same. */
export const guest = {
  deviceId: 'gw-qemu-1',
  hardware: 'gw-qemu',
  osname: 'outpost',
  /** guestfwd targets inside qemu's user network. */
  httpAddr: '10.0.2.100:8080',
  brokerAddr: '10.0.2.101:8883',
} as const;

/** Everything a test needs from the cached image. */
export interface BuiltImage {
  readonly dir: string;
  readonly disk: string;
  readonly repo: string;
  /** OSTree commit of each release: 1..4 (3 fails its health check, 4 never boots), 5..12 a good chain on 2, 13 breaks outpost. */
  readonly commits: ReadonlyMap<number, string>;
  readonly keysDir: string;
  /** TUF repository right after `repo init` (copied per test, releases are added to the copy). */
  readonly tufTemplate: string;
  readonly pkiDir: string;
  /** Build timings in ms (cold build only; cached runs report their own lookup time). */
  readonly timings: Record<string, number>;
}

/** The cache root. */
export function cacheRoot(): string {
  return process.env.OUTPOST_SYSTEM_CACHE ?? '/var/cache/outpost-system';
}

async function hashTree(hash: ReturnType<typeof createHash>, path: string): Promise<void> {
  const info = await stat(path);
  if (info.isDirectory()) {
    for (const name of (await readdir(path)).sort()) await hashTree(hash, join(path, name));
    return;
  }
  hash.update(`${relative(repoRoot, path)}\0${info.mode & 0o777}\0`);
  hash.update(await readFile(path));
}

async function hashOf(paths: string[], extra = ''): Promise<string> {
  const hash = createHash('sha256').update(extra);
  for (const p of paths) await hashTree(hash, p);
  return hash.digest('hex').slice(0, 16);
}

function ctl(args: string[]): Promise<unknown> {
  return execa('node', [join(repoRoot, 'dist', 'runtime', 'cli', 'outpostctl.js'), ...args]);
}

/** The device's config.json; probation uses the image's own health check (release 3 breaks it). */
function deviceConfig(): unknown {
  return {
    deviceId: guest.deviceId,
    broker: {
      url: `mqtts://${guest.brokerAddr}`,
      caFile: '/etc/outpost/tls/ca.crt',
      certFile: '/etc/outpost/tls/client.crt',
      keyFile: '/etc/outpost/tls/client.key',
      keepaliveSec: 10,
      reconnectMaxMs: 5000,
    },
    update: {
      server: `http://${guest.httpAddr}/tuf/`,
      ostreeUrl: `http://${guest.httpAddr}/ostree`,
      rootFile: '/etc/outpost/root.json',
      hardware: guest.hardware,
      arch: 'x86_64',
      sysroot: '/',
      osname: guest.osname,
      checkIntervalSec: 3600,
      // Two trial boots: a power cut during the first one is survivable (probation runs again).
      boot: { backend: 'grub', grubEnvFile: '/boot/grub/grubenv', trialBoots: 2 },
      // Cuts in both trial boots defer a good release (power loss?); 2 min, not 10, until its next trial.
      deferral: { backoffSec: 120 },
      probation: { windowSec: 30, intervalSec: 3, checks: [{ name: 'rig-health', command: ['/usr/libexec/rig/health'] }] },
    },
    // ostree and GRUB only through the socket-activated installer (outpost-installer.socket).
    // Steps of one update come minutes apart on this TCG guest (downloads, probation); starting
    // node again for each costs seconds, so one installer serves a whole update here.
    installer: { socket: '/run/outpost-installer.sock', idleExitSec: 300 },
    // Signed remote commands (scenario 02 reboots through one and logs in through an access
    // grant); issuers come with the metadata. gwops is made by build-image.sh.
    commands: { access: { principals: ['gwops'] } },
    // Scenario 01: a unit burning CPU is restarted through the installer (which allows the units
    // named here), and a failing check reboots once, then the breaker holds. Both pass while the
    // burner is stopped / the file is absent, so the other scenarios never see them fail.
    // The cpu check measures rig-burn.service's slice, not `unit:`: finding a unit's cgroup takes
    // `systemctl show` as user outpost, which needs D-Bus, and the image has none (it would fail,
    // and its restart-unit remediation would start the burner).
    health: {
      checks: [
        { name: 'rig-burn-cpu', kind: 'cpu', cgroup: '/rig.slice', maxPercent: 50, intervalSec: 2, failAfter: 2, timeoutSec: 10, remediation: { action: 'restart-unit', unit: 'rig-burn.service' } },
        { name: 'rig-reboot-trigger', kind: 'exec', severity: 'wanted', command: ['/usr/bin/test', '!', '-e', '/var/lib/rig/health-fail'], intervalSec: 2, failAfter: 2, remediation: { action: 'reboot' } },
      ],
      rebootBreaker: { maxReboots: 1, windowSec: 86400 },
      // Attempts 5, 10, 20 s apart: scenario 01's short hold still sees the breaker refuse several.
      backoffMinSec: 5,
    },
  };
}

/** Stages outpost + node + /etc/outpost as a tree that build-image.sh copies over the rootfs. */
async function stagePayload(payload: string, tufTemplate: string, pkiDir: string): Promise<void> {
  const lib = join(payload, 'usr', 'lib', 'outpost');
  await mkdir(lib, { recursive: true });
  for (const f of ['package.json', 'package-lock.json']) await cp(join(repoRoot, f), join(lib, f));
  await cp(join(repoRoot, 'dist', 'runtime'), join(lib, 'dist', 'runtime'), { recursive: true });
  await cp(join(repoRoot, 'native', 'build', 'Release', 'outpost_native.node'), join(lib, 'native', 'build', 'Release', 'outpost_native.node'));
  // Production deps only, offline: copy the checkout's node_modules and prune the dev ones.
  await cp(join(repoRoot, 'node_modules'), join(lib, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  await execa('npm', ['prune', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--offline'], { cwd: lib });
  await mkdir(join(payload, 'usr', 'bin'), { recursive: true });
  await cp('/usr/bin/node', join(payload, 'usr', 'bin', 'node'));
  await writeFile(join(payload, 'usr', 'bin', 'outpost'), '#!/bin/sh\nexec /usr/bin/node /usr/lib/outpost/dist/runtime/cli/outpost.js "$@"\n');
  await chmod(join(payload, 'usr', 'bin', 'outpost'), 0o755);
  await mkdir(join(payload, 'usr', 'lib', 'systemd', 'system'), { recursive: true });
  await cp(join(repoRoot, 'systemd', 'outpost.service'), join(payload, 'usr', 'lib', 'systemd', 'system', 'outpost.service'));
  await cp(join(repoRoot, 'systemd', 'outpost-trial-guard.service'), join(payload, 'usr', 'lib', 'systemd', 'system', 'outpost-trial-guard.service'));
  for (const unit of ['outpost-installer.socket', 'outpost-installer.service']) await cp(join(repoRoot, 'systemd', unit), join(payload, 'usr', 'lib', 'systemd', 'system', unit));
  await mkdir(join(payload, 'usr', 'lib', 'sysusers.d'), { recursive: true });
  await cp(join(repoRoot, 'systemd', 'outpost.sysusers.conf'), join(payload, 'usr', 'lib', 'sysusers.d', 'outpost.conf'));
  await mkdir(join(payload, 'usr', 'libexec'), { recursive: true });
  await cp(join(repoRoot, 'systemd', 'outpost-trial-guard'), join(payload, 'usr', 'libexec', 'outpost-trial-guard'));
  await chmod(join(payload, 'usr', 'libexec', 'outpost-trial-guard'), 0o755);
  // As README.md installs it: sshd reads only outpost's key files for the group outpost-access.
  await mkdir(join(payload, 'etc', 'ssh', 'sshd_config.d'), { recursive: true });
  await cp(join(repoRoot, 'systemd', 'outpost-access.sshd.conf'), join(payload, 'etc', 'ssh', 'sshd_config.d', 'outpost-access.conf'));
  await mkdir(join(payload, 'usr', 'lib', 'tmpfiles.d'), { recursive: true });
  await cp(join(repoRoot, 'systemd', 'outpost.tmpfiles.conf'), join(payload, 'usr', 'lib', 'tmpfiles.d', 'outpost.conf'));
  const etc = join(payload, 'etc', 'outpost');
  await mkdir(join(etc, 'tls'), { recursive: true });
  await writeFile(join(etc, 'config.json'), `${JSON.stringify(deviceConfig(), null, 2)}\n`);
  await cp(join(tufTemplate, '1.root.json'), join(etc, 'root.json'));
  for (const f of ['ca.crt', 'client.crt', 'client.key']) await cp(join(pkiDir, f), join(etc, 'tls', f));
}

async function timed<T>(timings: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings[name] = Math.round(performance.now() - t0);
  }
}

async function loadImage(dir: string, timings: Record<string, number>): Promise<BuiltImage> {
  const env = await readFile(join(dir, 'commits.env'), 'utf8');
  const commits = new Map<number, string>();
  for (const m of env.matchAll(/^V(\d+)=([0-9a-f]{64})$/gm)) commits.set(Number(m[1]), m[2] ?? '');
  const saved = existsSync(join(dir, 'timings.json')) ? (JSON.parse(await readFile(join(dir, 'timings.json'), 'utf8')) as Record<string, number>) : {};
  return {
    dir,
    disk: join(dir, 'disk.qcow2'),
    repo: join(dir, 'repo'),
    commits,
    keysDir: join(dir, 'keys'),
    tufTemplate: join(dir, 'tuf'),
    pkiDir: join(dir, 'pki'),
    timings: { ...saved, ...timings },
  };
}

/** Keeps the new image and the previous one (another checkout may still use it); ~1.2 GB each. */
async function pruneImages(cache: string, keep: string): Promise<void> {
  const dirs = (await readdir(cache)).filter((n) => /^image-[0-9a-f]{16}$/.test(n)).map((n) => join(cache, n)).filter((d) => d !== keep);
  const withTime = await Promise.all(dirs.map(async (d) => ({ d, t: (await stat(d)).mtimeMs })));
  for (const { d } of withTime.sort((a, b) => b.t - a.t).slice(1)) await rm(d, { recursive: true, force: true });
}

/** Builds (or finds) the image; `log` receives progress lines. */
export async function ensureImage(log: (line: string) => void = () => {}): Promise<BuiltImage> {
  const cache = cacheRoot();
  await mkdir(cache, { recursive: true });
  const timings: Record<string, number> = {};
  const rootfsKey = await hashOf([join(imageDir, 'rootfs.sh')]);
  const rootfs = join(cache, `rootfs-${rootfsKey}`);
  if (!existsSync(rootfs)) {
    log(`building rootfs ${rootfs} (mmdebstrap, about 2-3 min)`);
    await timed(timings, 'rootfsMs', () => execa(join(imageDir, 'rootfs.sh'), [rootfs], { stdio: 'inherit' }));
  }
  const imageKey = await hashOf(
    [join(imageDir, 'build-image.sh'), join(imageDir, 'overlay'), join(imageDir, 'grub.cfg'), join(repoRoot, 'dist', 'runtime'),
      join(repoRoot, 'native', 'build', 'Release', 'outpost_native.node'), join(repoRoot, 'package-lock.json'),
      join(repoRoot, 'systemd'), join(import.meta.dirname, 'image.ts')],
    `${rootfsKey}\0${(await stat('/usr/bin/node')).size}`,
  );
  const dir = join(cache, `image-${imageKey}`);
  if (existsSync(join(dir, 'disk.qcow2'))) return loadImage(dir, { lookupMs: 0 });
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  log(`building image ${dir}`);
  await timed(timings, 'imageTotalMs', async () => {
    const keys = join(tmp, 'keys');
    const tuf = join(tmp, 'tuf');
    await mkdir(keys);
    for (const role of ['root', 'targets', 'snapshot', 'timestamp']) await ctl(['keys', 'generate', '--role', role, '--out', keys]);
    const key = (role: string) => join(keys, `${role}.key`);
    await ctl(['repo', 'init', tuf, '--root-key', key('root'), '--targets-key', key('targets'), '--snapshot-key', key('snapshot'), '--timestamp-key', key('timestamp')]);
    const pki = await createPki({ dir: join(tmp, 'pki'), deviceId: guest.deviceId, days: 3650 });
    // The guest reaches the broker as 10.0.2.101 (a guestfwd address): the server cert must name it.
    await issueCert({ dir: pki.dir, ca: pki.ca, name: 'server-guest', cn: 'outpost-broker', usage: 'server', altNames: [`IP:${guest.brokerAddr.split(':')[0]}`, 'IP:127.0.0.1'], days: 3650 });
    const payload = join(tmp, 'payload');
    await timed(timings, 'payloadMs', () => stagePayload(payload, tuf, pki.dir));
    const result = await execa(join(imageDir, 'build-image.sh'), [rootfs, payload, tmp], { all: true, reject: false });
    await writeFile(join(tmp, 'build.log'), result.all ?? '');
    if (result.exitCode !== 0) throw new Error(`build-image.sh failed (${result.exitCode}); see ${join(tmp, 'build.log')}:\n${(result.all ?? '').slice(-3000)}`);
    for (const m of (result.all ?? '').matchAll(/^TIMING (\S+) (\d+) ms$/gm)) timings[`${m[1]}Ms`] = Number(m[2]);
    await rm(payload, { recursive: true, force: true });
  });
  await writeFile(join(tmp, 'timings.json'), `${JSON.stringify(timings, null, 2)}\n`);
  await rename(tmp, dir);
  await pruneImages(cache, dir);
  return loadImage(dir, {});
}
