/**
 * OTA update bytes and apply: one realistic update (a Debian 12 rootfs with openssl upgraded from
 * bookworm-security, see debian-rootfs.ts) moved five ways, all in the same run on the same trees:
 *
 * - outpost: the real daemon (dist, simulated boot backend, the unit's NODE_OPTIONS) updating a
 *   temp sysroot from a TUF repository made by the real `outpostctl release add` (which generates
 *   the inline static delta); bytes are what the file server sent it, and its RssAnon is sampled
 *   every 100 ms through download, apply and deploy;
 * - `ostree pull` over HTTP from the same archive repo, once with objects only and once with a
 *   default-generated static delta on the server (bytes counted by the file server);
 * - `xdelta3 -9` between ext4 images of the two trees (`mkfs.ext4 -d`, reproducible flags);
 * - zchunk: chunks of the v2 image's .zck missing from the v1 image's .zck, plus the v2 header.
 *
 * Apply time on the device is `ostree static-delta apply-offline` into a bare repo holding v1
 * (median of 3, on fresh hard-linked copies), the pulls' wall time, and `xdelta3 -d`.
 * Needs root (mmdebstrap, ostree ownership, mkfs -d); everything lives under `dir`.
 */
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { silentLogger } from '../runtime/logs/index.js';
import { createExec } from '../runtime/platform/index.js';
import { commitTree, initRepo } from '../runtime/update/ostree-release.js';
import type { UpdateStatus } from '../runtime/update/index.js';
import { packageRoot } from '../runtime/version.js';
import { deviceWorld, outpostBin } from '../scripts/world/device.js';
import { startFileServer, type FileServer, type ServedRequest } from '../scripts/world/file-server.js';
import { until } from '../scripts/world/until.js';
import { benchKernelVersion, debianRootfsPair, dpkgVersions, gatewayPackages, packageChanges, sourceDateEpoch, unpackOstreeTree } from './debian-rootfs.js';
import { sampleMemory, type PhasePeak } from './sampler.js';
import { daemonNodeOptions } from './startup-memory.js';

/** One way of moving the update. */
export interface WireRow {
  method: string;
  /** What crosses the wire. */
  artifact: string;
  bytes: number;
  /** Time to apply it on the device side, or null when not measured. */
  applyMs: number | null;
  applyWhat: string | null;
  command: string;
  /** For pulls: bytes and requests by kind (deltas/, objects/, the rest). */
  breakdown?: Record<string, { requests: number; bytes: number }>;
}

/** One phase of the daemon's update. */
export interface DaemonPhase extends PhasePeak {
  ms: number;
}

/** Everything ota.json records. */
export interface OtaResult {
  tree: {
    source: 'mmdebstrap';
    suite: string;
    packages: string[];
    upgrade: { name: string; from: string | null; to: string | null }[];
    sourceDateEpoch: string;
    v1Bytes: number;
    v2Bytes: number;
    v2Files: number;
    /** `ostree diff v1 v2`: files modified, added, deleted. */
    changedFiles: { modified: number; added: number; deleted: number };
    kernel: string;
    cache: { dir: string; cached: boolean; buildSec: number };
    mmdebstrapArgs: { v1: string[]; v2: string[] };
  };
  commits: { v1: string; v2: string };
  rows: WireRow[];
  daemon: {
    nodeOptions: string;
    bandwidthBytesPerSec: number;
    wire: { metadataBytes: number; deltaBytes: number; ostreeRepoBytes: number; requests: number };
    phases: DaemonPhase[];
    /** Step timings the daemon logged itself. */
    logged: { staticDeltaAppliedMs: number | null; fsckMs: number | null; deployMs: number | null };
    result: string;
  };
  image: { bytes: number; mkfs: string; xdelta3EncodeMs: number; zchunk: { v2HeaderBytes: number; missingChunkBytes: number; chunks: number; missingChunks: number; zckDeltaSize: string } };
  applyOfflineRunsMs: number[];
  stepsSec: Record<string, number>;
}

const branch = 'outpost/bench/x86_64';
const osname = 'outpost-bench';
const hardware = 'gw-bench';
/** The daemon's download cap: 1 Mbit/s, a modest cellular link, so the download lasts long enough to sample. */
const bandwidthBytesPerSec = 128 * 1024;
const imageUuid = '2e8ef1f8-5b1c-4c69-b7d2-0b7e2f7b4a11';

async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await execa(cmd, args, { env: { LC_ALL: 'C', ...env }, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.exitCode}): ${(r.all ?? '').slice(-2000)}`);
  return r.stdout;
}

async function timedMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return Math.round(performance.now() - t0);
}

const sizeOf = async (path: string): Promise<number> => (await stat(path)).size;
const sumBytes = (requests: ServedRequest[]): number => requests.reduce((sum, r) => sum + r.bytesSent, 0);
const breakdown = (requests: ServedRequest[]): Record<string, { requests: number; bytes: number }> => {
  const out: Record<string, { requests: number; bytes: number }> = {};
  for (const r of requests) {
    const kind = r.path.includes('/deltas/') ? 'deltas' : r.path.includes('/objects/') ? 'objects' : 'summary, config, refs, indexes';
    const entry = (out[kind] ??= { requests: 0, bytes: 0 });
    entry.requests += 1;
    entry.bytes += r.bytesSent;
  }
  return out;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

/** ostree sets the immutable flag on deployment roots; clear it so the temp dir can be removed. */
function unlockDeployments(sysroot: string): void {
  const base = join(sysroot, 'ostree', 'deploy', osname, 'deploy');
  if (!existsSync(base)) return;
  for (const entry of readdirSync(base, { withFileTypes: true })) if (entry.isDirectory()) execFileSync('chattr', ['-i', join(base, entry.name)]);
}

/** `zck_read_header -c`: header size and (checksum, compressed size) of every chunk. */
async function zckChunks(file: string): Promise<{ headerBytes: number; chunks: { checksum: string; compBytes: number }[] }> {
  const out = await run('zck_read_header', ['-c', file]);
  const headerBytes = Number(/^Header size: (\d+)/m.exec(out)?.[1] ?? NaN);
  const chunks = [...out.matchAll(/^\s*\d+\s+([0-9a-f]+)\s+\d+\s+(\d+)\s+\d+\s*$/gm)].map((m) => ({ checksum: m[1] ?? '', compBytes: Number(m[2]) }));
  if (!Number.isFinite(headerBytes) || chunks.length === 0) throw new Error(`cannot parse zck_read_header -c ${file}`);
  return { headerBytes, chunks };
}

/** Runs the benchmark in `dir` (removed by the caller); `log` gets progress lines. */
export async function benchOta(dir: string, log: (line: string) => void): Promise<OtaResult> {
  if (process.getuid?.() !== 0) throw new Error('the OTA bench needs root (mmdebstrap, ostree file ownership, mkfs.ext4 -d)');
  const root = packageRoot() ?? process.cwd();
  const stepsSec: Record<string, number> = {};
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    log(`ota: ${name}`);
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      stepsSec[name] = Math.round((performance.now() - t0) / 100) / 10;
    }
  };
  const exec = createExec(silentLogger);
  const www = join(dir, 'www');
  const buildRepo = join(www, 'repo');
  const sysroot = join(dir, 'sysroot');
  const deviceRepo = join(sysroot, 'ostree', 'repo');
  const v1Repo = join(dir, 'v1-repo');
  let server: FileServer | undefined;
  const device = deviceWorld('gw-bench-1');

  try {
    // The trees.
    const pair = await step('Debian rootfs pair (mmdebstrap, cached)', () => debianRootfsPair(log));
    const trees = { v1: join(dir, 'trees', 'v1'), v2: join(dir, 'trees', 'v2') };
    await step('unpack both trees in OSTree layout', () => Promise.all([unpackOstreeTree(pair.v1Tar, trees.v1), unpackOstreeTree(pair.v2Tar, trees.v2)]));
    const upgrade = packageChanges(dpkgVersions(trees.v1), dpkgVersions(trees.v2));
    if (upgrade.length === 0) {
      throw new Error(`v1 and v2 have the same package versions: ${pair.upgrade.join(', ')} has no newer version in bookworm-security now; set OUTPOST_BENCH_UPGRADE to packages that do`);
    }
    const duBytes = async (path: string): Promise<number> => Number((await run('du', ['-sb', path])).split('\t')[0]);
    const [v1Bytes, v2Bytes] = await Promise.all([duBytes(trees.v1), duBytes(trees.v2)]);
    const v2Files = Number((await run('sh', ['-c', 'find "$1" -type f | wc -l', 'sh', trees.v2])).trim());

    // The build repo and the two commits.
    const commits = await step('ostree commit v1 and v2 (archive repo)', async () => {
      await initRepo(exec, { path: buildRepo, mode: 'archive' });
      const v1 = await commitTree(exec, { repo: buildRepo, branch, tree: trees.v1, subject: 'bench v1', version: '1' });
      const v2 = await commitTree(exec, { repo: buildRepo, branch, tree: trees.v2, subject: `bench v2: ${upgrade.map((u) => `${u.name} ${u.to ?? '(removed)'}`).join(', ')}`, version: '2' });
      return { v1, v2 };
    });
    const diffLines = (await run('ostree', ['diff', `--repo=${buildRepo}`, commits.v1, commits.v2])).split('\n');
    const changedFiles = { modified: diffLines.filter((l) => l.startsWith('M ')).length, added: diffLines.filter((l) => l.startsWith('A ')).length, deleted: diffLines.filter((l) => l.startsWith('D ')).length };
    server = await startFileServer({ root: www });
    const srv = server;

    // Release side: a TUF repository and release 2 with a delta from v1, made by the real outpostctl.
    const tufDir = join(www, 'tuf');
    const keysDir = join(dir, 'keys');
    const rootFile = join(dir, 'device-root.json');
    const ctl = (args: string[]) => run('node', [join(root, 'dist', 'runtime', 'cli', 'outpostctl.js'), ...args]);
    const deltaFile = await step('outpostctl release add --delta-from v1 (generates the inline delta)', async () => {
      await mkdir(keysDir, { recursive: true });
      for (const role of ['root', 'targets', 'snapshot', 'timestamp']) await ctl(['keys', 'generate', '--role', role, '--out', keysDir]);
      const key = (role: string) => join(keysDir, `${role}.key`);
      const signing = ['--targets-key', key('targets'), '--snapshot-key', key('snapshot'), '--timestamp-key', key('timestamp')];
      await ctl(['repo', 'init', tufDir, '--root-key', key('root'), ...signing]);
      await copyFile(join(tufDir, '1.root.json'), rootFile);
      await ctl(['release', 'add', '--repo', tufDir, '--ostree-repo', buildRepo, '--ref', commits.v2, '--hardware', hardware, '--arch', 'x86_64', '--version', '2', '--delta-from', commits.v1, ...signing]);
      const deltasDir = join(tufDir, 'targets', 'deltas');
      const files = (await readdir(deltasDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
      if (files.length !== 1 || files[0] === undefined) throw new Error(`expected one delta file under ${deltasDir}`);
      return join(files[0].parentPath, files[0].name);
    });
    const deltaBytes = await sizeOf(deltaFile);

    // Device side: a sysroot running v1, and a pristine copy of its repo for the standalone runs.
    await step('device sysroot: pull-local v1 into a bare repo, ostree admin deploy', async () => {
      await mkdir(sysroot, { recursive: true });
      await run('ostree', ['admin', 'init-fs', sysroot]);
      await run('ostree', ['admin', 'os-init', `--sysroot=${sysroot}`, osname]);
      await run('ostree', ['pull-local', `--repo=${deviceRepo}`, buildRepo, commits.v1]);
      await run('ostree', ['admin', 'deploy', `--sysroot=${sysroot}`, `--os=${osname}`, commits.v1]);
      await run('cp', ['-al', deviceRepo, v1Repo]);
    });
    const cloneV1 = async (name: string): Promise<string> => {
      const path = join(dir, name);
      await run('cp', ['-al', v1Repo, path]);
      return path;
    };

    // The real daemon, from dist, updating the sysroot.
    const daemon = await step('outpost daemon: update v1 → v2 (download capped at 1 Mbit/s)', async () => {
      device.writeConfig({
        update: {
          server: `${srv.url}/tuf/`,
          ostreeUrl: `${srv.url}/repo`,
          rootFile,
          hardware,
          arch: 'x86_64',
          sysroot,
          osname,
          checkIntervalSec: 3600,
          bandwidthBytesPerSec,
          boot: { backend: 'simulated', trialBoots: 2 },
          probation: { windowSec: 2, intervalSec: 1 },
        },
      });
      return runDaemonUpdate(device, srv);
    });

    // Standalone apply: what the device does with the delta file, without the daemon around it.
    const applyOfflineRunsMs = await step('ostree static-delta apply-offline ×3', async () => {
      const runs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const repo = await cloneV1(`apply-${i}`);
        runs.push(await timedMs(() => run('ostree', ['static-delta', 'apply-offline', `--repo=${repo}`, deltaFile])));
        await run('ostree', ['show', `--repo=${repo}`, commits.v2]);
        await rm(repo, { recursive: true, force: true });
      }
      return runs;
    });

    // Plain ostree pulls over HTTP from the same archive repo.
    const pull = async (name: string): Promise<{ bytes: number; ms: number; requests: ServedRequest[] }> => {
      const repo = await cloneV1(name);
      await run('ostree', ['remote', 'add', `--repo=${repo}`, '--no-gpg-verify', '--set=gpg-verify-summary=false', 'bench', `${srv.url}/repo`]);
      // As on a device that pulled v1 before: the remote ref names v1, the from-commit of a delta.
      await run('ostree', ['refs', `--repo=${repo}`, `--create=bench:${branch}`, commits.v1]);
      const before = srv.requests.length;
      const ms = await timedMs(() => run('ostree', ['pull', `--repo=${repo}`, 'bench', branch]));
      const requests = srv.requests.slice(before);
      const got = (await run('ostree', ['rev-parse', `--repo=${repo}`, `bench:${branch}`])).trim();
      if (got !== commits.v2) throw new Error(`ostree pull ended on ${got}, not v2 ${commits.v2}`);
      await rm(repo, { recursive: true, force: true });
      return { bytes: sumBytes(requests), ms, requests };
    };
    const objectPull = await step('ostree pull over HTTP (objects, summary)', async () => {
      await run('ostree', ['summary', '-u', `--repo=${buildRepo}`]);
      return pull('pull-objects');
    });
    const deltaPull = await step('ostree pull over HTTP (server has a default static delta)', async () => {
      await run('ostree', ['static-delta', 'generate', `--repo=${buildRepo}`, `--from=${commits.v1}`, `--to=${commits.v2}`]);
      await run('ostree', ['summary', '-u', `--repo=${buildRepo}`]);
      const result = await pull('pull-delta');
      if (!result.requests.some((r) => r.path.includes('/deltas/') && r.status === 200)) throw new Error('ostree pull did not use the server-side static delta');
      return result;
    });

    // Image-based baselines: ext4 images of the same trees.
    const imageBytes = Math.ceil((Math.max(v1Bytes, v2Bytes) * 1.3 + 64 * 2 ** 20) / 2 ** 22) * 2 ** 22;
    const images = { v1: join(dir, 'v1.ext4'), v2: join(dir, 'v2.ext4') };
    const mkfsArgs = ['-q', '-F', '-t', 'ext4', '-U', imageUuid, '-E', `hash_seed=${imageUuid},root_owner=0:0`];
    await step('mkfs.ext4 -d of both trees', () => Promise.all((['v1', 'v2'] as const).map(async (v) => {
      await run('truncate', ['-s', String(imageBytes), images[v]]);
      await run('mkfs.ext4', [...mkfsArgs, '-d', trees[v], images[v]], { E2FSPROGS_FAKE_TIME: sourceDateEpoch });
    })));
    const vcdiff = join(dir, 'v1-v2.vcdiff');
    const xdelta3EncodeMs = await step('xdelta3 -e -9', () => timedMs(() => run('xdelta3', ['-e', '-9', '-f', '-s', images.v1, images.v2, vcdiff])));
    const xdelta3ApplyMs = await step('xdelta3 -d', async () => {
      const out = join(dir, 'v2-from-delta.ext4');
      const ms = await timedMs(() => run('xdelta3', ['-d', '-f', '-s', images.v1, vcdiff, out]));
      await run('cmp', [out, images.v2]);
      await rm(out, { force: true });
      return ms;
    });
    const zck = { v1: `${images.v1}.zck`, v2: `${images.v2}.zck` };
    await step('zck of both images', () => Promise.all((['v1', 'v2'] as const).map((v) => run('zck', ['-o', zck[v], images[v]]))));
    const zchunk = await step('zchunk chunk sets', async () => {
      const [old, next] = await Promise.all([zckChunks(zck.v1), zckChunks(zck.v2)]);
      const have = new Set(old.chunks.map((c) => c.checksum));
      const missing = next.chunks.filter((c) => !have.has(c.checksum));
      const zckDeltaSize = (await run('zck_delta_size', [zck.v1, zck.v2])).trim().replace(/\n/g, '; ');
      return { v2HeaderBytes: next.headerBytes, missingChunkBytes: missing.reduce((s, c) => s + c.compBytes, 0), chunks: next.chunks.length, missingChunks: missing.length, zckDeltaSize };
    });

    const rows: WireRow[] = [
      {
        method: 'outpost: inline OSTree static delta',
        artifact: `TUF metadata + delta file (${deltaBytes} bytes), as the daemon downloaded them`,
        bytes: daemon.wire.metadataBytes + daemon.wire.deltaBytes + daemon.wire.ostreeRepoBytes,
        applyMs: median(applyOfflineRunsMs),
        applyWhat: 'ostree static-delta apply-offline into a bare repo holding v1 (median of 3)',
        command: 'ostree static-delta generate --inline --min-fallback-size=0 (outpostctl release add --delta-from)',
      },
      {
        method: 'ostree pull, HTTP archive repo',
        artifact: `summary, refs and the changed objects (${objectPull.requests.length} requests)`,
        bytes: objectPull.bytes,
        applyMs: objectPull.ms,
        applyWhat: 'the whole pull on loopback (fetch + write into a bare repo holding v1)',
        command: 'ostree pull (repo with ostree summary -u, no deltas)',
        breakdown: breakdown(objectPull.requests),
      },
      {
        method: 'ostree pull, HTTP archive repo with a default static delta',
        artifact: `summary, delta superblock + part, and loose objects (${deltaPull.requests.length} requests)`,
        bytes: deltaPull.bytes,
        applyMs: deltaPull.ms,
        applyWhat: 'the whole pull on loopback (fetch + write into a bare repo holding v1)',
        command: 'ostree static-delta generate (default flags) on the server, then ostree pull',
        breakdown: breakdown(deltaPull.requests),
      },
      {
        method: 'xdelta3 of the ext4 image',
        artifact: 'VCDIFF of v1.ext4 → v2.ext4',
        bytes: await sizeOf(vcdiff),
        applyMs: xdelta3ApplyMs,
        applyWhat: 'xdelta3 -d writing the whole v2 image from the v1 image',
        command: 'xdelta3 -e -9 -s v1.ext4 v2.ext4 (default 64 MiB source window)',
      },
      {
        method: 'zchunk of the ext4 image',
        artifact: `v2 .zck header + ${zchunk.missingChunks} of ${zchunk.chunks} chunks not in v1's .zck`,
        bytes: zchunk.v2HeaderBytes + zchunk.missingChunkBytes,
        applyMs: null,
        applyWhat: null,
        command: 'zck (default chunking, zstd) of both images; fetched = header + chunks whose checksum the old file lacks',
      },
      {
        method: 'for scale: the whole v2 image, zstd (.zck)',
        artifact: 'what a full image update sends',
        bytes: await sizeOf(zck.v2),
        applyMs: null,
        applyWhat: null,
        command: 'zck v2.ext4',
      },
    ];

    return {
      tree: {
        source: 'mmdebstrap',
        suite: 'bookworm',
        packages: [...gatewayPackages],
        upgrade,
        sourceDateEpoch,
        v1Bytes,
        v2Bytes,
        v2Files,
        changedFiles,
        kernel: `stand-in ${benchKernelVersion} (no real kernel in the trees)`,
        cache: { dir: pair.cacheDir, cached: pair.cached, buildSec: pair.buildSec },
        mmdebstrapArgs: pair.args,
      },
      commits,
      rows,
      daemon,
      image: { bytes: imageBytes, mkfs: `E2FSPROGS_FAKE_TIME=${sourceDateEpoch} mkfs.ext4 ${mkfsArgs.join(' ')} -d TREE IMAGE`, xdelta3EncodeMs, zchunk },
      applyOfflineRunsMs,
      stepsSec,
    };
  } finally {
    await server?.close();
    unlockDeployments(sysroot);
    device.cleanup();
  }
}

/** Starts the daemon, applies the update, follows the simulated reboot until it commits. */
async function runDaemonUpdate(device: ReturnType<typeof deviceWorld>, srv: FileServer): Promise<OtaResult['daemon']> {
  const env: Record<string, string | undefined> = { ...process.env, OUTPOST_CONFIG: device.configPath, NODE_OPTIONS: daemonNodeOptions };
  for (const key of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete env[key];
  const start = () => {
    const child = execa('node', [outpostBin(), 'run'], { env, extendEnv: false, reject: false, buffer: false });
    const tail: string[] = [];
    const keep = (line: string) => {
      tail.push(line);
      if (tail.length > 40) tail.shift();
    };
    if (child.stderr) createInterface({ input: child.stderr }).on('line', keep);
    const lines = child.stdout ? createInterface({ input: child.stdout }) : undefined;
    lines?.on('line', keep);
    return { child, lines, tail };
  };
  const exited = (child: { exitCode: number | null; signalCode: string | null }) => child.exitCode !== null || child.signalCode !== null;
  const ready = async (child: ReturnType<typeof start>['child']) =>
    until('the daemon API', async () => (exited(child) ? true : existsSync(device.socketPath) && (await device.cli(['update', 'status', '--json'])).exitCode === 0 ? true : undefined));

  const boot = start();
  let phase = 'start';
  const marks: { phase: string; at: number }[] = [];
  const setPhase = (next: string): void => {
    phase = next;
    marks.push({ phase: next, at: performance.now() });
  };
  const logged: OtaResult['daemon']['logged'] = { staticDeltaAppliedMs: null, fsckMs: null, deployMs: null };
  boot.lines?.on('line', (line) => {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const ms = typeof rec.ms === 'number' ? rec.ms : null;
    if (rec.msg === 'static delta applied') logged.staticDeltaAppliedMs = ms;
    if (rec.msg === 'fsck passed') logged.fsckMs = ms;
    if (rec.msg === 'deployed') logged.deployMs = ms;
    if (rec.msg === 'update state') {
      // Machine states are named after what finished: `downloaded` runs the apply, `applying` the deploy.
      if (rec.from === 'downloading') setPhase('apply: static-delta apply-offline + verify (ls -R, fsck)');
      if (rec.from === 'downloaded') setPhase('deploy: ostree admin deploy');
      if (rec.from === 'applying') setPhase('reboot requested');
    }
  });
  const sampler = sampleMemory(boot.child.pid ?? 0, () => phase);
  let peaks: PhasePeak[] = [];
  try {
    await ready(boot.child);
    setPhase('idle, 2 s after start');
    await sleep(2000);
    const before = srv.requests.length;
    setPhase('check + download');
    const apply = await device.cli(['update', 'apply']);
    if (apply.exitCode !== 0) throw new Error(`outpost update apply failed: ${apply.stderr}`);
    await until('the simulated reboot', () => (exited(boot.child) ? true : undefined), 15 * 60_000).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; daemon output:\n${boot.tail.join('\n')}`);
    });
    setPhase('exited');
    peaks = sampler.stop();
    const served = srv.requests.slice(before);
    if (boot.child.exitCode !== 0) throw new Error(`daemon exited ${boot.child.exitCode}:\n${boot.tail.join('\n')}`);

    // After the "reboot": probation, commit.
    const second = start();
    let status: UpdateStatus | undefined;
    try {
      await ready(second.child);
      status = await until('the update to commit', async () => {
        const r = await device.cli(['update', 'status', '--json']);
        const s = r.exitCode === 0 ? (JSON.parse(r.stdout) as UpdateStatus) : undefined;
        return s?.state === 'idle' && s.last ? s : undefined;
      }, 120_000);
    } finally {
      second.child.kill('SIGTERM');
      await second.child;
    }
    if (status.last?.result !== 'committed') throw new Error(`the update did not commit: ${JSON.stringify(status.last)}`);

    const phases: DaemonPhase[] = peaks
      .filter((p) => p.phase !== 'start' && p.phase !== 'exited')
      .map((p) => {
        const i = marks.findIndex((m) => m.phase === p.phase);
        const from = marks[i]?.at ?? 0;
        const to = marks[i + 1]?.at ?? from;
        return { ...p, ms: Math.round(to - from) };
      });
    const isDelta = (r: ServedRequest) => r.path.startsWith('/tuf/targets/deltas/');
    return {
      nodeOptions: daemonNodeOptions,
      bandwidthBytesPerSec,
      wire: {
        metadataBytes: sumBytes(served.filter((r) => r.path.startsWith('/tuf/') && !isDelta(r))),
        deltaBytes: sumBytes(served.filter(isDelta)),
        ostreeRepoBytes: sumBytes(served.filter((r) => r.path.startsWith('/repo/'))),
        requests: served.length,
      },
      phases,
      logged,
      result: status.last.result,
    };
  } finally {
    sampler.stop();
    if (!exited(boot.child)) boot.child.kill('SIGKILL');
    await boot.child;
  }
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(2)} MB`;
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

/** The README section's body: the bytes table and the daemon's phases. */
export function otaTables(r: OtaResult, header: string): string {
  const outpost = r.rows[0]?.bytes ?? 1;
  const upgrade = r.tree.upgrade.map((u) => `${u.name} ${u.from ?? '—'} → ${u.to ?? '—'}`).join(', ');
  const c = r.tree.changedFiles;
  const applyShort = (row: WireRow): string => {
    if (row.applyMs === null) return '—';
    if (row.method.startsWith('outpost')) return `${secs(row.applyMs)} (apply-offline)`;
    if (row.method.startsWith('ostree pull')) return `${secs(row.applyMs)} (whole pull, loopback)`;
    return `${secs(row.applyMs)} (xdelta3 -d, whole image)`;
  };
  const d = r.daemon;
  return [
    `${header} Tree: Debian 12 minbase + ${r.tree.packages.length} packages, ${mb(r.tree.v2Bytes)} in ${r.tree.v2Files} files; update: ${upgrade} (${c.modified} files modified, ${c.added} added, ${c.deleted} removed); ext4 images ${mb(r.image.bytes)}.`,
    '',
    '| method | on the wire | × outpost | apply on the device |',
    '|---|---|---|---|',
    ...r.rows.map((row) => {
      const ratio = row.bytes / outpost;
      return `| ${row.method} | ${mb(row.bytes)} | ${ratio.toFixed(ratio >= 10 ? 0 : 1)} | ${applyShort(row)} |`;
    }),
    '',
    `The daemon during that update (download capped at ${d.bandwidthBytesPerSec / 1024} KiB/s; it logged apply-offline ${d.logged.staticDeltaAppliedMs === null ? '—' : secs(d.logged.staticDeltaAppliedMs)}, fsck ${d.logged.fsckMs === null ? '—' : secs(d.logged.fsckMs)}, deploy ${d.logged.deployMs === null ? '—' : secs(d.logged.deployMs)}; result after the simulated reboot: ${d.result}):`,
    '',
    '| phase | duration | outpost RssAnon, peak | its ostree children, peak RssAnon |',
    '|---|---|---|---|',
    // The last phase ends with the process (its samples read 0): nothing to show.
    ...d.phases.filter((p) => p.phase !== 'reboot requested').map((p) => `| ${p.phase} | ${secs(p.ms)} | ${mib(p.peakRssAnonKiB)} | ${p.peakChildrenRssAnonKiB === 0 ? '—' : mib(p.peakChildrenRssAnonKiB)} |`),
  ].join('\n');
}
