/**
 * Overhead of the health scheduler: `outpost run` from dist with the unit's NODE_OPTIONS, several
 * daemons side by side in one run, each with its own state/run dirs and device id: with no
 * `health` section (the idle daemon, the baseline), with 20 checks at intervalSec 10 (a mix that
 * needs nothing external: disk, memory, cpu, temperature, tcp to servers this process starts, exec
 * of /bin/true; http only on request, see healthChecks), and with the same minus the exec checks (so the fork's share shows).
 * Optionally the daemon from before the health domain landed (a commit built into a separate
 * copy), idle with no `health` section too. After a settle period, CPU time (utime + stime from
 * /proc/<pid>/stat, and cutime + cstime of the children it reaped) is read over `rounds`
 * consecutive windows of `windowSec`; RssAnon at the end of each window and its peak (sampled
 * every second) from /proc/<pid>/status.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { startNotifyReceiver } from '../test/fixtures/notify-receiver.js';
import { cgroup2Mount, cgroupSkipReason } from '../test/fixtures/cgroup.js';
import { packageRoot } from '../runtime/version.js';
import { procMemory } from './proc.js';
import { sampleMemory } from './sampler.js';
import { daemonNodeOptions } from './startup-memory.js';

/** The commit before the first health commit (d0b7192): the daemon as it was without the health domain. */
export const defaultHealthBaseRev = '8735444';

/** Knobs (env in run.ts): settle before measuring, window length, number of windows, the pre-health commit or null. */
export interface HealthOverheadOptions {
  settleSec: number;
  windowSec: number;
  rounds: number;
  baseRev: string | null;
  /** A commit to build into a separate copy and measure instead of `dist` (a tree others edit and rebuild meanwhile); null: `dist`. */
  rev: string | null;
}

/** One window of one daemon. */
export interface OverheadRound {
  windowSec: number;
  /** utime + stime of the daemon (all its threads). */
  cpuSec: number;
  /** cutime + cstime: children it waited for (the exec checks' processes). */
  childrenCpuSec: number;
  rssAnonKiB: number;
  rssKiB: number;
}

/** One daemon's figures. */
export interface OverheadRow {
  key: 'base' | 'idle' | 'checks' | 'noExec';
  subject: string;
  checks: number;
  pid: number;
  readyMs: number;
  rounds: OverheadRound[];
  /** Median over the rounds of (cpuSec + childrenCpuSec), extrapolated to an hour. */
  cpuSecPerHour: number;
  /** The same as a share of one core, in percent. */
  percentOfCore: number;
  /** Median over the rounds of RssAnon at a window's end. */
  rssAnonKiB: number;
  /** Highest RssAnon seen over all windows (sampled every second). */
  peakRssAnonKiB: number;
  /** The health report at the end (`outpost health --json`), status → number of checks. */
  checkStatus?: Record<string, number>;
}

/** The whole result. */
export interface HealthOverheadResult extends HealthOverheadOptions {
  daemonNodeOptions: string;
  clockTicksPerSec: number;
  cpuCheckOnCgroup: string | null;
  loadAvg: { before: number[]; after: number[] };
  checks: Record<string, unknown>[];
  rows: OverheadRow[];
  /** Failure building the pre-health commit, when its row is missing. */
  baseSkipped?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** utime, stime, cutime, cstime (fields 14–17 of /proc/<pid>/stat; the comm before them may hold spaces). */
function cpuTicks(pid: number): { self: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  const n = (i: number): number => Number(fields[i - 3]);
  return { self: n(14) + n(15), children: n(16) + n(17) };
}

async function listen(server: TcpServer | HttpServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** The 20 checks (exec ones included when `exec`): what a gateway might watch, all passing here. */
function healthChecks(dir: string, tcpPorts: number[], httpPort: number | null, cgroup: string | null, exec: boolean): Record<string, unknown>[] {
  const every = { intervalSec: 10 };
  const disk = [
    { name: 'disk-root', path: '/', minFreePercent: 1 },
    { name: 'disk-tmp', path: '/tmp', minFreeBytes: 1024 * 1024 },
    { name: 'disk-state', path: dir, minFreePercent: 2, minFreeInodes: 1000 },
    { name: 'disk-var', path: '/var', minFreeBytes: 16 * 1024 * 1024 },
    { name: 'disk-shm', path: '/dev/shm', minFreeInodes: 100 },
    { name: 'disk-usr', path: '/usr', minFreePercent: 0.5 },
  ].map((c) => ({ ...every, kind: 'disk', ...c }));
  const memory = [
    { name: 'mem-available', minAvailableBytes: 16 * 1024 * 1024 },
    { name: 'mem-psi-some', maxSomeAvg10: 99 },
    { name: 'mem-psi-full', maxFullAvg10: 99 },
    { name: 'mem-all', minAvailableBytes: 8 * 1024 * 1024, maxSomeAvg10: 99, maxFullAvg10: 99 },
  ].map((c) => ({ ...every, kind: 'memory', ...c }));
  const cpu = [
    { name: 'cpu-psi', maxSomeAvg10: 100 },
    { name: 'cpu-load', maxLoadPerCpu: 100 },
    cgroup === null ? { name: 'cpu-psi-load', maxSomeAvg10: 100, maxLoadPerCpu: 100 } : { name: 'cpu-app', cgroup, maxPercent: 90 },
  ].map((c) => ({ ...every, kind: 'cpu', ...c }));
  const temperature = [
    { name: 'temp-all', maxCelsius: 95 },
    { name: 'temp-zone0', maxCelsius: 85, zones: ['thermal_zone0'] },
  ].map((c) => ({ ...every, kind: 'temperature', ...c }));
  const tcp = tcpPorts.map((port, i) => ({ ...every, kind: 'tcp', name: `tcp-${i + 1}`, host: '127.0.0.1', port }));
  // In place of disk-usr. Until af7a668 an http check (then fetch) killed the daemon under the unit's --jitless (undici's parser is WebAssembly); OUTPOST_BENCH_HEALTH_HTTP=0 leaves it out, to compare with older revisions.
  const http = httpPort === null ? [] : [{ ...every, kind: 'http', name: 'http-status', url: `http://127.0.0.1:${httpPort}/health`, bodyMatch: '^ok$' }];
  const execs = exec ? ['exec-1', 'exec-2'].map((name) => ({ ...every, kind: 'exec', name, command: ['/bin/true'] })) : [];
  return [...(http.length > 0 ? disk.slice(0, -1) : disk), ...memory, ...cpu, ...temperature, ...tcp, ...http, ...execs];
}

/** Builds `rev` of the repository at `root` into `dir` (sources from git, node_modules and the native addon linked); the CLI's path. */
async function buildRev(root: string, rev: string, dir: string): Promise<string> {
  mkdirSync(dir, { recursive: true });
  await execa('sh', ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', 'sh', root, rev, dir]);
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  mkdirSync(join(dir, 'native'), { recursive: true });
  symlinkSync(join(root, 'native', 'build'), join(dir, 'native', 'build'));
  await execa('node', [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.build.json')]);
  return join(dir, 'dist', 'runtime', 'cli', 'outpost.js');
}

/** Runs the benchmark in `dir` (temp; the caller removes it). */
export async function benchHealthOverhead(dir: string, options: HealthOverheadOptions, log: (line: string) => void): Promise<HealthOverheadResult> {
  const root = packageRoot() ?? process.cwd();
  const clockTicksPerSec = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const tcpServers = [0, 1, 2].map(() => createTcpServer((socket) => socket.end()));
  const httpServer = createHttpServer((_req, res) => res.end('ok'));
  const children: ResultPromise[] = [];
  let cgroupDir: string | undefined;
  let receiver: Awaited<ReturnType<typeof startNotifyReceiver>> | undefined;
  try {
    const tcpPorts: number[] = [];
    for (const server of tcpServers) tcpPorts.push(await listen(server));
    const httpPort = await listen(httpServer);
    // A cpu check on a cgroup needs a writable cgroup v2: an empty group made here (it burns nothing), else host PSI and load.
    const cgRoot = cgroup2Mount();
    let cgroup: string | null = null;
    if (cgRoot !== undefined && cgroupSkipReason(cgRoot) === false) {
      cgroup = `/outpost-bench-health-${process.pid}`;
      cgroupDir = join(cgRoot, cgroup);
      mkdirSync(cgroupDir);
    }
    const withHttp = process.env.OUTPOST_BENCH_HEALTH_HTTP === '0' ? null : httpPort;
    const checks = healthChecks(dir, tcpPorts, withHttp, cgroup, true);
    const noExec = healthChecks(dir, tcpPorts, withHttp, cgroup, false);
    const health = (list: Record<string, unknown>[]) => ({ health: { ...(cgRoot === undefined ? {} : { cgroupRoot: cgRoot }), checks: list } });

    let baseBin: string | null = null;
    let baseSkipped: string | undefined;
    if (options.baseRev !== null) {
      log(`building ${options.baseRev} (before the health domain) into a separate copy`);
      try {
        baseBin = await buildRev(root, options.baseRev, join(dir, 'base-src'));
      } catch (err) {
        baseSkipped = `could not build ${options.baseRev}: ${(err as Error).message.split('\n')[0]}`;
        log(baseSkipped);
      }
    }
    let currentBin = join(root, 'dist', 'runtime', 'cli', 'outpost.js');
    if (options.rev !== null) {
      log(`building ${options.rev} into a separate copy`);
      currentBin = await buildRev(root, options.rev, join(dir, 'current-src'));
    }
    const variants: { key: OverheadRow['key']; subject: string; bin: string; sections: Record<string, unknown>; checks: number }[] = [
      { key: 'idle', subject: 'outpost run, no `health` section (idle: the baseline)', bin: currentBin, sections: {}, checks: 0 },
      { key: 'checks', subject: `outpost run, ${checks.length} checks every 10 s`, bin: currentBin, sections: health(checks), checks: checks.length },
      { key: 'noExec', subject: `outpost run, the same without the 2 exec checks (${noExec.length} every 10 s)`, bin: currentBin, sections: health(noExec), checks: noExec.length },
      ...(baseBin === null ? [] : [{ key: 'base' as const, subject: `outpost run at ${options.baseRev} (before the health domain), no \`health\` section`, bin: baseBin, sections: {}, checks: 0 }]),
    ];

    receiver = await startNotifyReceiver(join(dir, 'notify.sock'));
    const started: { v: (typeof variants)[number]; pid: number; readyMs: number; configPath: string }[] = [];
    const tails = new Map<string, () => string>();
    const ticks = (s: (typeof started)[number]): { self: number; children: number } => {
      try {
        return cpuTicks(s.pid);
      } catch (err) {
        throw new Error(`${s.v.subject} is gone (${(err as Error).message}); the end of its log:\n${tails.get(s.v.key)?.() ?? ''}`);
      }
    };
    // One at a time to READY=1; then all idle side by side.
    for (const v of variants) {
      const id = `gw-bench-health-${v.key.toLowerCase()}`;
      const configPath = join(dir, `config-${id}.json`);
      writeFileSync(configPath, JSON.stringify({ deviceId: id, paths: { stateDir: join(dir, id, 'state'), runDir: join(dir, id, 'run') }, ...v.sections }));
      const t0 = performance.now();
      // Its log goes to a pipe, as to the journal under systemd; only the end is kept, to say why a daemon died.
      const daemon = execa('node', [v.bin, 'run'], { env: { OUTPOST_CONFIG: configPath, NOTIFY_SOCKET: receiver.address, NODE_OPTIONS: daemonNodeOptions }, reject: false, all: true, buffer: false });
      children.push(daemon);
      let tail = '';
      daemon.all?.on('data', (chunk: Buffer) => (tail = (tail + chunk.toString()).slice(-4000)));
      tails.set(v.key, () => tail);
      const pid = daemon.pid;
      if (pid === undefined) throw new Error(`cannot start ${v.subject}`);
      for (;;) {
        const datagram = await receiver.next(60_000);
        if (datagram.data.includes('READY=1') && (datagram.pid === null || datagram.pid === pid)) break;
      }
      started.push({ v, pid, readyMs: Math.round(performance.now() - t0), configPath });
      log(`${v.subject}: READY=1 (pid ${pid})`);
    }

    log(`settling ${options.settleSec} s`);
    await sleep(options.settleSec * 1000);
    const before = loadavg();
    const samplers = started.map((s) => sampleMemory(s.pid, () => 'window', 1000));
    const rounds: OverheadRound[][] = started.map(() => []);
    for (let r = 0; r < options.rounds; r += 1) {
      const t0 = performance.now();
      const start = started.map(ticks);
      await sleep(options.windowSec * 1000);
      const end = started.map(ticks);
      const windowSec = (performance.now() - t0) / 1000;
      started.forEach((s, i) => {
        const a = start[i] as { self: number; children: number };
        const b = end[i] as { self: number; children: number };
        const mem = procMemory(s.pid);
        rounds[i]?.push({ windowSec: Math.round(windowSec * 10) / 10, cpuSec: (b.self - a.self) / clockTicksPerSec, childrenCpuSec: (b.children - a.children) / clockTicksPerSec, rssAnonKiB: mem.rssAnonKiB, rssKiB: mem.rssKiB });
      });
      log(`window ${r + 1}/${options.rounds}: ${started.map((s, i) => `${s.v.key} ${rounds[i]?.at(-1)?.cpuSec.toFixed(2)}+${rounds[i]?.at(-1)?.childrenCpuSec.toFixed(2)} s, ${rounds[i]?.at(-1)?.rssAnonKiB} KiB`).join('; ')}`);
    }
    const peaks = samplers.map((s) => s.stop());
    const after = loadavg();

    const rows: OverheadRow[] = [];
    for (const [i, s] of started.entries()) {
      const own = rounds[i] ?? [];
      const perHour = median(own.map((r) => ((r.cpuSec + r.childrenCpuSec) / r.windowSec) * 3600));
      let checkStatus: Record<string, number> | undefined;
      if (s.v.checks > 0) {
        const report = await execa('node', [s.v.bin, 'health', '--json'], { env: { OUTPOST_CONFIG: s.configPath }, reject: false });
        try {
          checkStatus = {};
          for (const c of (JSON.parse(report.stdout) as { checks: { status: string }[] }).checks) checkStatus[c.status] = (checkStatus[c.status] ?? 0) + 1;
        } catch {
          checkStatus = { [`unreadable (exit ${report.exitCode})`]: s.v.checks };
        }
      }
      rows.push({
        key: s.v.key,
        subject: s.v.subject,
        checks: s.v.checks,
        pid: s.pid,
        readyMs: s.readyMs,
        rounds: own,
        cpuSecPerHour: Math.round(perHour * 100) / 100,
        percentOfCore: Math.round((perHour / 3600) * 100 * 1000) / 1000,
        rssAnonKiB: median(own.map((r) => r.rssAnonKiB)),
        peakRssAnonKiB: peaks[i]?.[0]?.peakRssAnonKiB ?? 0,
        ...(checkStatus ? { checkStatus } : {}),
      });
    }
    return {
      ...options,
      daemonNodeOptions,
      clockTicksPerSec,
      cpuCheckOnCgroup: cgroup,
      loadAvg: { before: before.map((x) => Math.round(x * 100) / 100), after: after.map((x) => Math.round(x * 100) / 100) },
      checks,
      rows,
      ...(baseSkipped === undefined ? {} : { baseSkipped }),
    };
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await Promise.allSettled(children);
    await receiver?.close();
    for (const server of [...tcpServers, httpServer]) server.close();
    if (cgroupDir !== undefined) {
      try {
        rmdirSync(cgroupDir);
      } catch {
        // Nothing ever ran in it; a failure here leaves an empty group behind, harmless.
      }
    }
  }
}

/** The README table and the differences against the goal. */
export function healthOverheadTables(result: HealthOverheadResult, header: string): string {
  const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
  const signedMib = (kib: number): string => `${kib >= 0 ? '+' : '−'}${(Math.abs(kib) / 1024).toFixed(2)} MiB`;
  const row = (key: OverheadRow['key']): OverheadRow | undefined => result.rows.find((r) => r.key === key);
  const lines = [
    header,
    '',
    '| daemon | CPU per hour (per window, self + reaped children) | % of one core | RssAnon (median of window ends) | RssAnon peak |',
    '|---|---|---|---|---|',
    ...result.rows.map((r) => {
      const windows = r.rounds.map((w) => `${((w.cpuSec / w.windowSec) * 3600).toFixed(1)}${w.childrenCpuSec > 0 ? ` + ${((w.childrenCpuSec / w.windowSec) * 3600).toFixed(1)}` : ''}`).join(', ');
      const status = r.checkStatus ? ` (at the end: ${Object.entries(r.checkStatus).map(([k, n]) => `${n} ${k}`).join(', ')})` : '';
      return `| ${r.subject}${status} | ${r.cpuSecPerHour.toFixed(1)} s (${windows}) | ${r.percentOfCore.toFixed(3)} % | ${mib(r.rssAnonKiB)} | ${mib(r.peakRssAnonKiB)} |`;
    }),
  ];
  const diff = (label: string, a: OverheadRow | undefined, b: OverheadRow | undefined, goal: boolean): string | undefined => {
    if (a === undefined || b === undefined) return undefined;
    const cpu = a.cpuSecPerHour - b.cpuSecPerHour;
    const pct = (cpu / 3600) * 100;
    const mem = a.rssAnonKiB - b.rssAnonKiB;
    const verdict = goal ? ` — goal < 1 % of one core and < 2 MiB: **${pct < 1 && mem < 2048 ? 'met' : 'not met'}**` : '';
    return `| ${label} | ${cpu >= 0 ? '+' : '−'}${Math.abs(cpu).toFixed(1)} s | ${pct >= 0 ? '+' : '−'}${Math.abs(pct).toFixed(3)} % | ${signedMib(mem)}${verdict} |`;
  };
  const diffs = [
    diff(`${row('checks')?.checks ?? 20} checks − idle`, row('checks'), row('idle'), true),
    diff('the 2 exec checks (20 checks − the same without them)', row('checks'), row('noExec'), false),
    diff(`${row('noExec')?.checks ?? 18} checks without exec − idle`, row('noExec'), row('idle'), false),
    diff(`idle now − idle at ${result.baseRev ?? '?'} (what the health domain costs a daemon without checks)`, row('idle'), row('base'), false),
  ].filter((l): l is string => l !== undefined);
  return [...lines, '', '| difference | CPU per hour | % of one core | RssAnon |', '|---|---|---|---|', ...diffs].join('\n');
}
