/**
 * The check kinds against real things: a CPU-burning process in a cgroup v2 the test creates, a
 * full loop-mounted file system, an HTTP server that never answers, real child processes killed
 * at the abort, real TCP ports, and `systemctl` as a script (systemd is not PID 1 here).
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, fsyncSync, openSync, writeSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { healthCheckSchema } from '../../../runtime/config/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { createExec, monotonicMs, type Exec } from '../../../runtime/platform/index.js';
import { createProbe, type ProbeDeps } from '../../../runtime/health/kinds/index.js';
import type { CheckOutcome } from '../../../runtime/health/probe.js';
import { cgroup2Mount, cgroupSkipReason } from '../../fixtures/cgroup.js';

const exec = createExec(silentLogger);

function deps(over: Partial<ProbeDeps> = {}): ProbeDeps {
  return { exec, cgroupRoot: '/sys/fs/cgroup', monotonicMs, ...over };
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-kinds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs a probe, aborting it after `abortMs`; also reports how long the run took. */
async function runFor(probe: { run(signal: AbortSignal): Promise<CheckOutcome> }, abortMs: number): Promise<{ outcome: CheckOutcome; ms: number }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), abortMs);
  const started = performance.now();
  try {
    const outcome = await probe.run(controller.signal);
    return { outcome, ms: performance.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** The pid a `sh -c 'echo $$ > file; exec ...'` wrote, once it has. */
async function pidFrom(file: string): Promise<number> {
  for (let i = 0; i < 100; i += 1) {
    if (existsSync(file)) {
      const text = readFileSync(file, 'utf8').trim();
      if (text !== '') return Number(text);
    }
    await sleep(20);
  }
  throw new Error(`${file} never got a pid`);
}

const cgroupRoot = cgroup2Mount();
const cgroupSkip = cgroupSkipReason(cgroupRoot);

/** USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux architecture outpost runs on. */
const msPerTick = 10;

/** utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat; the name in parentheses may hold spaces). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * With sched autogroups (sched(7)) every session shares the CPUs equally whatever its tasks' nice,
 * so on a host busy with other test runs a burner would get a fraction of a core. Its own
 * session's group at nice -20 (root only) gives it a whole one; the group ends with the burner.
 */
function boostAutogroup(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, '-20');
  } catch (err) {
    // No autogroups (CONFIG_SCHED_AUTOGROUP off): the task's own nice -20 is what counts.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * A process in a fresh cgroup of its own. One teardown kills and reaps it, then removes the
 * cgroup: a cgroup with a process in it cannot be removed.
 */
function inCgroup(t: Test, root: string, name: string, cmd: string, args: string[]): { path: string; pid: number } {
  const path = `/outpost-test-${process.pid}-${name}`;
  mkdirSync(join(root, path));
  // A session of its own: with sched autogroups that is a scheduling group of its own too (see boostAutogroup).
  const proc = spawn(cmd, args, { stdio: 'ignore', detached: true });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.teardown(async () => {
    proc.kill('SIGKILL');
    await exited;
    // The kernel lets go of a reaped process's cgroup a moment later.
    for (let i = 0; ; i += 1) {
      try {
        rmdirSync(join(root, path));
        return;
      } catch (err) {
        if (i === 50) throw err;
        await sleep(20);
      }
    }
  });
  if (proc.pid === undefined) throw new Error(`${cmd} did not start`);
  writeFileSync(join(root, path, 'cgroup.procs'), `${proc.pid}\n`);
  return { path, pid: proc.pid };
}

t.test('cpu: a CPU-burning process in its own cgroup fails at ~100%, an idle one passes', { skip: cgroupSkip }, async (t) => {
  const root = cgroupRoot as string;
  const burner = inCgroup(t, root, 'busy', 'nice', ['-n', '-20', process.execPath, '-e', 'for(;;){}']);
  boostAutogroup(burner.pid);
  const idler = inCgroup(t, root, 'idle', 'sleep', ['100']);
  const busyGroup = burner.path;
  const idleGroup = idler.path;
  t.equal(readFileSync(join(root, busyGroup, 'cgroup.procs'), 'utf8').trim(), String(burner.pid), 'the burner is in the test cgroup');

  const busy = createProbe(healthCheckSchema.parse({ name: 'busy', kind: 'cpu', cgroup: busyGroup, maxPercent: 50 }), deps({ cgroupRoot: root }));
  const idle = createProbe(healthCheckSchema.parse({ name: 'idle', kind: 'cpu', cgroup: idleGroup, maxPercent: 50 }), deps({ cgroupRoot: root }));
  const ticksBefore = cpuTicks(burner.pid);
  const before = monotonicMs();
  t.same(await busy.run(new AbortController().signal), { ok: true, detail: 'first sample', measurements: { maxPercent: 50 }, provisional: true });
  t.same(await idle.run(new AbortController().signal), { ok: true, detail: 'first sample', measurements: { maxPercent: 50 }, provisional: true });
  await sleep(1_500);
  const hot = await busy.run(new AbortController().signal);
  const processPercent = ((cpuTicks(burner.pid) - ticksBefore) * msPerTick * 100) / (monotonicMs() - before);
  const cool = await idle.run(new AbortController().signal);
  const cpuPercent = hot.measurements?.cpuPercent ?? -1;
  t.ok(Math.abs(cpuPercent - processPercent) < 15, `${cpuPercent}% is what the kernel counted for the burner itself in /proc/<pid>/stat (${processPercent.toFixed(1)}%)`);
  if (processPercent < 70) {
    // Steal time of an overloaded VM host starves even this burner; the figure above still had to agree.
    t.comment(`the burner got only ${processPercent.toFixed(1)}% of a core from this host: ~100% not checked`);
  } else {
    t.ok(cpuPercent > 70 && cpuPercent < 110, `one busy core measures ~100% (${cpuPercent})`);
    t.equal(hot.ok, false, 'the burner fails the check');
    t.match(hot.detail, new RegExp(`^cgroup ${busyGroup} used ${cpuPercent}% of one CPU over the last [\\d.]+ s, above 50%$`));
  }
  t.equal(cool.ok, true, 'the idle group passes');
  t.ok((cool.measurements?.cpuPercent ?? 100) < 5, `the idle group measures ~0% (${cool.measurements?.cpuPercent})`);
});

t.test('http: a server that accepts and never answers ends at the abort', async (t) => {
  let received: () => void = () => undefined;
  const requested = new Promise<void>((resolve) => (received = resolve));
  let closed: Promise<void> | undefined;
  const server = createHttpServer((req: IncomingMessage, res) => {
    if (req.url === '/hang') {
      closed = new Promise((resolve) => req.socket.once('close', () => resolve()));
      received();
      return;
    }
    if (req.url === '/ready') res.writeHead(200).end(`${'x'.repeat(70_000)}status: ready`);
    else if (req.url === '/ok') res.writeHead(200).end('status: ready\n');
    else if (req.url === '/starting') res.writeHead(200).end('status: starting\n');
    else res.writeHead(503).end('maintenance until 14:00\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const probe = (path: string, extra: Record<string, unknown> = {}) => createProbe(healthCheckSchema.parse({ name: 'web', kind: 'http', url: `${base}${path}`, timeoutSec: 1, ...extra }), deps());

  // Aborted 300 ms after the server has the request: the first fetch of a process loads undici, which on a busy host takes longer than that.
  const controller = new AbortController();
  const hanging = probe('/hang').run(controller.signal);
  await requested;
  await sleep(300);
  controller.abort();
  const aborted = performance.now();
  const outcome = await Promise.race([hanging, sleep(3_000).then(() => undefined)]);
  const ms = performance.now() - aborted;
  t.ok(ms < 500, `ended ${Math.round(ms)} ms after the abort`);
  t.same(outcome, { ok: false, detail: `http check web (GET ${base}/hang) did not finish within 1 s and was stopped` });
  await Promise.race([closed, sleep(2_000).then(() => Promise.reject(new Error('the connection stayed open')))]);
  t.pass('the abandoned connection is closed');

  t.match((await runFor(probe('/ok', { bodyMatch: 'status: ready' }), 5_000)).outcome, { ok: true, measurements: { status: 200 } });
  const starting = (await runFor(probe('/starting', { bodyMatch: 'status: ready' }), 5_000)).outcome;
  t.equal(starting.ok, false);
  t.match(starting.detail, /answered 200 but its body .* does not match \/status: ready\/: status: starting/);
  t.equal((await runFor(probe('/ready', { bodyMatch: 'status: ready' }), 5_000)).outcome.ok, false, 'only the first 64 KiB is matched');
  const down = (await runFor(probe('/down'), 5_000)).outcome;
  t.same(down.measurements?.status, 503);
  t.equal(down.detail, `GET ${base}/down answered 503, expected 200: maintenance until 14:00`);
  t.equal((await runFor(probe('/down', { status: [200, 503] }), 5_000)).outcome.ok, true, 'a listed status passes');
});

async function tryMount(dir: string, mnt: string): Promise<string | undefined> {
  const image = join(dir, 'fs.img');
  writeFileSync(image, Buffer.alloc(0));
  await execa('truncate', ['-s', '4M', image]);
  const ext4 = await execa('mkfs.ext4', ['-q', '-F', image], { reject: false });
  if (ext4.exitCode === 0 && (await execa('mount', ['-o', 'loop', image, mnt], { reject: false })).exitCode === 0) return 'ext4 on a loop device';
  if ((await execa('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { reject: false })).exitCode === 0) return 'tmpfs';
  return undefined;
}

/**
 * Writes until ENOSPC, again after each fsync: ext4's delayed allocation reserves more than it
 * finally uses, so the first ENOSPC leaves space that writeback gives back. Returns the bytes written.
 */
function fill(file: string): number {
  const chunk = Buffer.alloc(64 * 1024, 1);
  const fd = openSync(file, 'w');
  let total = 0;
  try {
    for (let round = 0; round < 10; round += 1) {
      let wrote = 0;
      try {
        for (;;) wrote += writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      total += wrote;
      try {
        fsyncSync(fd);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      if (wrote === 0) break;
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

t.test('disk: a full file system fails with its free bytes', async (t) => {
  const dir = tempDir(t);
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const kind = await tryMount(dir, mnt);
  if (kind === undefined) {
    t.plan(0, 'neither a loop-mounted ext4 nor a tmpfs can be mounted here (not root, or no loop devices)');
    return;
  }
  // Teardowns run last first: unmounted before tempDir's removal.
  t.teardown(async () => {
    await execa('umount', [mnt]);
  });
  const check = healthCheckSchema.parse({ name: 'data', kind: 'disk', path: mnt, minFreeBytes: 512 * 1024, minFreePercent: 10 });
  const probe = createProbe(check, deps());
  const empty = await probe.run(new AbortController().signal);
  t.equal(empty.ok, true, `an empty ${kind} passes`);
  t.ok((empty.measurements?.freeBytes ?? 0) > 512 * 1024);

  t.ok(fill(join(mnt, 'fill')) > 0, 'filled up');
  const full = await probe.run(new AbortController().signal);
  t.equal(full.ok, false, `a full ${kind} fails`);
  t.ok((full.measurements?.freeBytes ?? -1) < 512 * 1024, `freeBytes ${full.measurements?.freeBytes}`);
  t.equal(full.measurements?.minFreeBytes, 512 * 1024);
  t.match(full.detail, new RegExp(`^${mnt} has [\\d.]+ (B|KiB) free, below the minimum 512\\.0 KiB; ${mnt} has [\\d.]+% free, below the minimum 10%$`));
});

t.test('exec: exit codes, the environment, output bounded', async (t) => {
  const probe = (command: string[], name = 'script') => createProbe(healthCheckSchema.parse({ name, kind: 'exec', command }), deps());
  const live = new AbortController().signal;
  t.same(await probe(['true']).run(live), { ok: true, measurements: { exitCode: 0 } });
  const three = await probe(['sh', '-c', 'echo broken config >&2; exit 3']).run(live);
  t.same(three.measurements, { exitCode: 3 });
  t.match(three.detail, /^sh -c .*: exit code 3\nbroken config$/);
  t.equal((await probe(['sh', '-c', 'test "$OUTPOST_HEALTH_CHECK" = app-up'], 'app-up').run(live)).ok, true, 'OUTPOST_HEALTH_CHECK names the check');
  t.equal((await probe(['sh', '-c', 'test "$OUTPOST_HEALTH_CHECK" = other'], 'app-up').run(live)).ok, false);
  const missing = await probe(['outpost-no-such-check']).run(live);
  t.match(missing, { ok: false, detail: /outpost-no-such-check is not installed or not on PATH/ });

  const loud = await probe(['sh', '-c', 'seq 1 200000; seq 1 50000 >&2; exit 1']).run(live);
  t.equal(loud.ok, false);
  t.ok((loud.detail ?? '').length <= 4097, `detail is ${loud.detail?.length} characters`);
  t.match(loud.detail, /\n199999\n200000$/, 'the end of stdout is kept');
});

t.test('exec: a hung check is killed at the abort and does not stay behind', async (t) => {
  const dir = tempDir(t);
  const pidFile = join(dir, 'pid');
  const probe = createProbe(healthCheckSchema.parse({ name: 'hung', kind: 'exec', command: ['sh', '-c', `echo $$ > ${pidFile}; exec sleep 100`], timeoutSec: 1 }), deps());
  const running = runFor(probe, 300);
  const pid = await pidFrom(pidFile);
  t.ok(existsSync(`/proc/${pid}`), 'the check runs');
  t.teardown(() => {
    if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
  });
  const { outcome, ms } = await running;
  t.ok(ms < 1_500, `ended after ${Math.round(ms)} ms`);
  t.same(outcome, { ok: false, detail: `exec check hung (sh -c echo $$ > ${pidFile}; exec sleep 100) did not finish within 1 s and was stopped` });
  t.notOk(existsSync(`/proc/${pid}`), `process ${pid} is gone`);

  const stubbornFile = join(dir, 'stubborn');
  const stubborn = createProbe(healthCheckSchema.parse({ name: 'stubborn', kind: 'exec', command: ['sh', '-c', `trap '' TERM; echo $$ > ${stubbornFile}; exec sleep 100`] }), deps());
  const stubbornRun = runFor(stubborn, 300);
  const stubbornPid = await pidFrom(stubbornFile);
  t.teardown(() => {
    if (existsSync(`/proc/${stubbornPid}`)) process.kill(stubbornPid, 'SIGKILL');
  });
  const ended = await stubbornRun;
  t.equal(ended.outcome.ok, false);
  t.ok(ended.ms < 1_500, `one ignoring SIGTERM is killed at the abort too: its process group gets SIGKILL (${Math.round(ended.ms)} ms)`);
  t.notOk(existsSync(`/proc/${stubbornPid}`), `process ${stubbornPid} is gone`);
});

t.test('tcp: an open port passes, a closed one fails', async (t) => {
  const listen = async (): Promise<Server> => {
    const server = createTcpServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return server;
  };
  const open = await listen();
  t.teardown(() => new Promise<void>((resolve) => open.close(() => resolve())));
  const openPort = (open.address() as AddressInfo).port;
  const closedServer = await listen();
  const closedPort = (closedServer.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closedServer.close(() => resolve()));

  const probe = (port: number) => createProbe(healthCheckSchema.parse({ name: 'port', kind: 'tcp', host: '127.0.0.1', port }), deps());
  t.match(await probe(openPort).run(new AbortController().signal), { ok: true, measurements: { connectMs: Number } });
  t.same(await probe(closedPort).run(new AbortController().signal), { ok: false, detail: `TCP connection to 127.0.0.1:${closedPort} refused: nothing listens there` });
});

t.test('unit: systemctl as a script whose answer the test changes', async (t) => {
  const dir = tempDir(t);
  const stateFile = join(dir, 'state');
  const argsFile = join(dir, 'args');
  const script = join(dir, 'systemctl');
  writeFileSync(script, `#!/bin/sh\necho "$@" > ${argsFile}\n[ -f ${dir}/hang ] && exec sleep 100\ncat ${stateFile}\n`);
  chmodSync(script, 0o755);
  // The Exec port with `systemctl` resolved to the script: the real runner, a stand-in tool.
  const scripted: Exec = { run: (cmd, args, opts) => exec.run(cmd === 'systemctl' ? script : cmd, args, opts) };
  const probe = createProbe(healthCheckSchema.parse({ name: 'app', kind: 'unit', unit: 'app.service', maxRestarts: 3, restartWindowSec: 600, timeoutSec: 1 }), deps({ exec: scripted }));
  const live = new AbortController().signal;

  writeFileSync(stateFile, 'ActiveState=active\nNRestarts=1\n');
  t.same(await probe.run(live), { ok: true, detail: 'first reading: restarts are counted from here', measurements: { restarts: 0, maxRestarts: 3, restartWindowSec: 600, nRestarts: 1 }, provisional: true });
  t.equal(readFileSync(argsFile, 'utf8').trim(), 'show --property=ActiveState,NRestarts -- app.service');

  writeFileSync(stateFile, 'ActiveState=active\nNRestarts=5\n');
  const restarting = await probe.run(live);
  t.same(restarting, { ok: false, detail: 'systemd restarted app.service 4 times within 600 s, more than 3 (journalctl -u app.service says why)', measurements: { restarts: 4, maxRestarts: 3, restartWindowSec: 600, nRestarts: 5 } });

  writeFileSync(stateFile, 'ActiveState=failed\nNRestarts=0\n');
  t.match(await probe.run(live), { ok: false, detail: /^app\.service is failed, not active/ });

  writeFileSync(join(dir, 'hang'), '');
  const { outcome, ms } = await runFor(probe, 300);
  t.ok(ms < 1_500, `a hung systemctl ends at the abort (${Math.round(ms)} ms)`);
  t.same(outcome, { ok: false, detail: 'unit check app (app.service) did not finish within 1 s and was stopped' });
});
