import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { healthCheckSchema } from '../../../runtime/config/index.js';
import { OutpostError } from '../../../runtime/errors.js';
import type { Exec, ExecOptions, ExecResult } from '../../../runtime/platform/index.js';
import { createProbe, parsePressure, type ProbeDeps } from '../../../runtime/health/kinds/index.js';
import { OutputTail } from '../../../runtime/health/kinds/exec.js';
import { readBounded } from '../../../runtime/health/kinds/http.js';
import { Readable } from 'node:stream';
import { parseMemAvailable } from '../../../runtime/health/kinds/memory.js';
import { parseLoad1, parseUsageUsec } from '../../../runtime/health/kinds/cpu.js';
import { parseShow, restartsWithin } from '../../../runtime/health/kinds/unit.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-kinds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function write(file: string, text: string): void {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
}

/** A clock the test moves. */
function fakeClock(startMs = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let ms = startMs;
  return { now: () => ms, advance: (by) => (ms += by) };
}

/** An Exec answering from `answer`, recording what it was asked. */
function scriptedExec(answer: (cmd: string, args: string[], opts: ExecOptions) => Promise<ExecResult> | ExecResult): Exec & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    async run(cmd, args, opts = {}) {
      calls.push([cmd, ...args]);
      return answer(cmd, args, opts);
    },
  };
}

const noExec = scriptedExec(() => {
  throw new Error('no tool expected');
});

function deps(over: Partial<ProbeDeps> = {}): ProbeDeps {
  return { exec: noExec, cgroupRoot: '/nonexistent-cgroup', procRoot: '/nonexistent-proc', thermalRoot: '/nonexistent-thermal', monotonicMs: () => 0, ...over };
}

const live = (): AbortSignal => new AbortController().signal;

const psiText = 'some avg10=12.50 avg60=5.00 avg300=1.25 total=123456\nfull avg10=3.00 avg60=1.00 avg300=0.50 total=789\n';

t.test('parsers', async (t) => {
  t.same(parsePressure(psiText), { some: { avg10: 12.5, avg60: 5, avg300: 1.25, totalUsec: 123456 }, full: { avg10: 3, avg60: 1, avg300: 0.5, totalUsec: 789 } });
  t.same(parsePressure('some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nnew-field x=1\n'), { some: { avg10: 0, avg60: 0, avg300: 0, totalUsec: 0 } }, 'no full line (cpu before 5.13); unknown lines ignored');
  t.equal(parseMemAvailable('MemTotal:        2000000 kB\nMemFree:  10 kB\nMemAvailable:     512000 kB\n'), 512000 * 1024);
  t.equal(parseMemAvailable('MemTotal: 2000000 kB\n'), undefined);
  t.equal(parseUsageUsec('usage_usec 4242\nuser_usec 4000\nsystem_usec 242\n'), 4242);
  t.equal(parseUsageUsec('user_usec 4000\n'), undefined);
  t.equal(parseLoad1('1.50 0.75 0.20 2/300 4242\n'), 1.5);
  t.equal(parseLoad1(''), undefined);
  t.same([...parseShow('ActiveState=failed\nNRestarts=4\n')], [['ActiveState', 'failed'], ['NRestarts', '4']]);
});

t.test('OutputTail keeps only the end of the output', async (t) => {
  const tail = new OutputTail(20);
  for (let i = 0; i < 100; i += 1) tail.push(`line ${i}`);
  t.equal(tail.text(), 'line 98\nline 99');
  tail.push('x'.repeat(50));
  t.equal(tail.text(), 'x'.repeat(20), 'one long line is cut to its end');
});

t.test('readBounded stops at the bound and destroys the rest', async (t) => {
  let pulled = 0;
  const body = Readable.from((function* () {
    for (;;) {
      pulled += 1;
      yield Buffer.from('abcdefghij');
    }
  })());
  t.equal(await readBounded(body, 25), 'abcdefghijabcdefghijabcde');
  t.ok(body.destroyed, 'the endless rest is not read');
  t.ok(pulled <= 4, `read ${pulled} chunks, not the endless stream`);
  t.equal(await readBounded(Readable.from([]), 10), '');
});

t.test('memory: MemAvailable and PSI against their limits', async (t) => {
  const proc = tempDir(t);
  write(join(proc, 'meminfo'), 'MemTotal: 2048000 kB\nMemAvailable: 100000 kB\n');
  write(join(proc, 'pressure', 'memory'), psiText);
  const d = deps({ procRoot: proc });
  const enough = await createProbe(healthCheckSchema.parse({ name: 'm', kind: 'memory', minAvailableBytes: 50_000 * 1024, maxSomeAvg10: 20, maxFullAvg10: 5 }), d).run(live());
  t.same(enough, { ok: true, measurements: { availableBytes: 102_400_000, minAvailableBytes: 51_200_000, someAvg10: 12.5, maxSomeAvg10: 20, fullAvg10: 3, maxFullAvg10: 5 } });

  const low = await createProbe(healthCheckSchema.parse({ name: 'm', kind: 'memory', minAvailableBytes: 200_000 * 1024 }), d).run(live());
  t.equal(low.ok, false);
  t.match(low.detail, /available memory 97\.7 MiB is below the minimum 195\.3 MiB \(MemAvailable in .*meminfo\)/);
  t.same(low.measurements, { availableBytes: 102_400_000, minAvailableBytes: 204_800_000 });

  const pressured = await createProbe(healthCheckSchema.parse({ name: 'm', kind: 'memory', maxSomeAvg10: 10, maxFullAvg10: 2 }), d).run(live());
  t.equal(pressured.ok, false);
  t.match(pressured.detail, /some avg10 is 12\.5%, above 10%.*; memory pressure full avg10 is 3%, above 2%/);

  rmSync(join(proc, 'pressure'), { recursive: true });
  const noPsi = await createProbe(healthCheckSchema.parse({ name: 'm', kind: 'memory', maxSomeAvg10: 10 }), d).run(live());
  t.equal(noPsi.ok, false);
  t.match(noPsi.detail, /pressure\/memory is missing: .*CONFIG_PSI/);

  write(join(proc, 'meminfo'), 'MemTotal: 2048000 kB\n');
  const old = await createProbe(healthCheckSchema.parse({ name: 'm', kind: 'memory', minAvailableBytes: 1 }), d).run(live());
  t.equal(old.ok, false);
  t.match(old.detail, /no MemAvailable line/);
});

t.test('cpu: percent of one core between two runs of a cgroup', async (t) => {
  const root = tempDir(t);
  const stat = join(root, 'app.slice', 'cpu.stat');
  const setUsage = (usec: number): void => write(stat, `usage_usec ${usec}\nuser_usec 0\nsystem_usec 0\n`);
  const clock = fakeClock();
  const probe = createProbe(healthCheckSchema.parse({ name: 'c', kind: 'cpu', cgroup: '/app.slice', maxPercent: 50 }), deps({ cgroupRoot: root, monotonicMs: clock.now }));

  setUsage(5_000_000);
  t.same(await probe.run(live()), { ok: true, detail: 'first sample', measurements: { maxPercent: 50 }, provisional: true }, 'a first sample is no verdict: probation asks again');

  clock.advance(2_000);
  setUsage(5_000_000 + 1_900_000);
  const busy = await probe.run(live());
  t.same(busy.measurements, { cpuPercent: 95, maxPercent: 50 });
  t.equal(busy.ok, false);
  t.match(busy.detail, /cgroup \/app\.slice used 95% of one CPU over the last 2 s, above 50%/);

  clock.advance(10_000);
  setUsage(6_900_000 + 1_000_000);
  t.same(await probe.run(live()), { ok: true, measurements: { cpuPercent: 10, maxPercent: 50 } });

  clock.advance(1_000);
  setUsage(3_000);
  const restarted = await probe.run(live());
  t.equal(restarted.ok, true, 'a counter that went down starts sampling again, no negative percent');
  t.match(restarted.detail, /first sample: \/app\.slice was created anew/);

  clock.advance(1_000);
  setUsage(3_000 + 2_000_000);
  t.same((await probe.run(live())).measurements, { cpuPercent: 200, maxPercent: 50 }, 'two busy cores are 200%');

  rmSync(join(root, 'app.slice'), { recursive: true });
  const gone = await probe.run(live());
  t.equal(gone.ok, false);
  t.match(gone.detail, /cgroup \/app\.slice does not exist under /);

  clock.advance(1_000);
  setUsage(9_000_000);
  t.same(await probe.run(live()), { ok: true, detail: 'first sample', measurements: { maxPercent: 50 }, provisional: true }, 'after vanishing, sampling starts again');
});

t.test('cpu: a unit\'s cgroup is asked from systemd once, and again when it is gone', async (t) => {
  const root = tempDir(t);
  let cgroup = '/system.slice/app.service';
  const exec = scriptedExec((cmd, args, opts) => {
    t.ok(opts.signal, 'systemctl gets the run\'s signal');
    return { stdout: `${cgroup}\n`, stderr: '' };
  });
  const clock = fakeClock();
  write(join(root, 'system.slice', 'app.service', 'cpu.stat'), 'usage_usec 1000\n');
  const probe = createProbe(healthCheckSchema.parse({ name: 'c', kind: 'cpu', unit: 'app.service', maxPercent: 50 }), deps({ exec, cgroupRoot: root, monotonicMs: clock.now }));
  t.equal((await probe.run(live())).detail, 'first sample');
  clock.advance(1_000);
  t.same((await probe.run(live())).measurements, { cpuPercent: 0, maxPercent: 50 });
  t.same(exec.calls, [['systemctl', 'show', '--property=ControlGroup', '--value', '--', 'app.service']], 'cached between runs');

  rmSync(join(root, 'system.slice'), { recursive: true });
  cgroup = '/app.slice/app.service';
  write(join(root, 'app.slice', 'app.service', 'cpu.stat'), 'usage_usec 500\n');
  clock.advance(1_000);
  t.equal((await probe.run(live())).detail, 'first sample: /app.slice/app.service was created anew since the last run');
  t.equal(exec.calls.length, 2, 'asked again once the cgroup was gone');

  cgroup = '';
  rmSync(join(root, 'app.slice'), { recursive: true });
  const stopped = await probe.run(live());
  t.same(stopped, { ok: true, detail: 'app.service is not running', measurements: { cpuPercent: 0, maxPercent: 50 } }, 'a unit that is not running burns nothing (whether it should run is a unit check\'s verdict)');
});

t.test('cpu: without systemd to ask (no D-Bus for the unprivileged agent), a unit is read at its default cgroup; nowhere to read is unmeasured', async (t) => {
  const root = tempDir(t);
  const clock = fakeClock();
  const exec = scriptedExec(() => {
    throw new OutpostError('EXEC_FAILED', 'systemctl show: exit code 1\nFailed to connect to bus: No such file or directory');
  });
  const probe = createProbe(healthCheckSchema.parse({ name: 'c', kind: 'cpu', unit: 'app.service', maxPercent: 50 }), deps({ exec, cgroupRoot: root, monotonicMs: clock.now }));
  const nowhere = await probe.run(live());
  t.match(nowhere, { ok: false, unmeasured: true, detail: /could not ask systemd for the cgroup of app\.service \([^]*Failed to connect to bus[^]*\), and .*system\.slice\/app\.service does not exist; set the check's cgroup instead/ });
  write(join(root, 'system.slice', 'app.service', 'cpu.stat'), 'usage_usec 1000000\n');
  t.match(await probe.run(live()), { ok: true, provisional: true }, 'found at /system.slice/app.service');
  clock.advance(1_000);
  write(join(root, 'system.slice', 'app.service', 'cpu.stat'), 'usage_usec 1900000\n');
  t.match(await probe.run(live()), { ok: false, measurements: { cpuPercent: 90, maxPercent: 50 } });
});

t.test('cpu: host PSI and load per CPU', async (t) => {
  const proc = tempDir(t);
  write(join(proc, 'pressure', 'cpu'), psiText);
  const cpus = availableParallelism();
  write(join(proc, 'loadavg'), `${cpus * 2} 1.00 1.00 3/200 999\n`);
  const d = deps({ procRoot: proc });
  const pass = await createProbe(healthCheckSchema.parse({ name: 'c', kind: 'cpu', maxSomeAvg10: 20, maxLoadPerCpu: 2.5 }), d).run(live());
  t.same(pass, { ok: true, measurements: { someAvg10: 12.5, maxSomeAvg10: 20, load1: cpus * 2, cpus, loadPerCpu: 2, maxLoadPerCpu: 2.5 } });
  const fail = await createProbe(healthCheckSchema.parse({ name: 'c', kind: 'cpu', maxSomeAvg10: 10, maxLoadPerCpu: 1.5 }), d).run(live());
  t.equal(fail.ok, false);
  t.match(fail.detail, /CPU pressure some avg10 is 12\.5%, above 10%.*; 1-minute load .* is 2 per CPU, above 1\.5/);
  rmSync(join(proc, 'pressure'), { recursive: true });
  const noPsi = await createProbe(healthCheckSchema.parse({ name: 'c', kind: 'cpu', maxSomeAvg10: 10 }), d).run(live());
  t.match(noPsi, { ok: false, detail: /pressure\/cpu is missing: .*CONFIG_PSI/ });
});

t.test('temperature: the hottest selected zone', async (t) => {
  const root = tempDir(t);
  const zone = (n: number, type: string, milli: string): void => {
    write(join(root, `thermal_zone${n}`, 'type'), `${type}\n`);
    write(join(root, `thermal_zone${n}`, 'temp'), `${milli}\n`);
  };
  zone(0, 'cpu-thermal', '71500');
  zone(1, 'gpu-thermal', '85250');
  write(join(root, 'cooling_device0', 'type'), 'fan\n');
  const d = deps({ thermalRoot: root });
  const all = await createProbe(healthCheckSchema.parse({ name: 't', kind: 'temperature', maxCelsius: 80 }), d).run(live());
  t.same(all, { ok: false, detail: 'thermal_zone1 (gpu-thermal) is at 85.25 °C, above 80 °C', measurements: { celsius: 85.25, maxCelsius: 80 } });
  const cpuOnly = await createProbe(healthCheckSchema.parse({ name: 't', kind: 'temperature', maxCelsius: 80, zones: ['cpu-thermal'] }), d).run(live());
  t.same(cpuOnly, { ok: true, detail: 'hottest: thermal_zone0 (cpu-thermal) at 71.5 °C', measurements: { celsius: 71.5, maxCelsius: 80 } });
  const named = await createProbe(healthCheckSchema.parse({ name: 't', kind: 'temperature', maxCelsius: 80, zones: ['soc'] }), d).run(live());
  t.same(named, { ok: true, detail: 'no thermal zones of type soc (present: cpu-thermal, gpu-thermal)', measurements: { maxCelsius: 80 } });

  rmSync(join(root, 'thermal_zone1', 'temp'));
  mkdirSync(join(root, 'thermal_zone1', 'temp'));
  const broken = await createProbe(healthCheckSchema.parse({ name: 't', kind: 'temperature', maxCelsius: 80 }), d).run(live());
  t.equal(broken.ok, false);
  t.match(broken.detail, /cannot read .*thermal_zone1\/temp \(gpu-thermal\)/);

  const none = await createProbe(healthCheckSchema.parse({ name: 't', kind: 'temperature', maxCelsius: 80 }), deps({ thermalRoot: join(root, 'missing') })).run(live());
  t.same(none, { ok: true, detail: 'no thermal zones', measurements: { maxCelsius: 80 } });
});

t.test('disk: statfs of the path against the minimums', async (t) => {
  const dir = tempDir(t);
  const pass = await createProbe(healthCheckSchema.parse({ name: 'd', kind: 'disk', path: dir, minFreeBytes: 1, minFreePercent: 0.001 }), deps()).run(live());
  t.equal(pass.ok, true);
  t.ok((pass.measurements?.freeBytes ?? 0) > 0);
  const fail = await createProbe(healthCheckSchema.parse({ name: 'd', kind: 'disk', path: dir, minFreeBytes: Number.MAX_SAFE_INTEGER }), deps()).run(live());
  t.equal(fail.ok, false);
  t.match(fail.detail, new RegExp(`^${dir} has .* free, below the minimum 8192\\.0 TiB$`));
  t.equal(fail.measurements?.minFreeBytes, Number.MAX_SAFE_INTEGER);
  const missing = await createProbe(healthCheckSchema.parse({ name: 'd', kind: 'disk', path: join(dir, 'nope'), minFreeBytes: 1 }), deps()).run(live());
  t.same(missing, { ok: false, detail: `${join(dir, 'nope')} does not exist` });
});

t.test('unit: active, and restarts counted within the window', async (t) => {
  let show = 'ActiveState=active\nNRestarts=0';
  const exec = scriptedExec(() => ({ stdout: show, stderr: '' }));
  const clock = fakeClock();
  const probe = createProbe(healthCheckSchema.parse({ name: 'u', kind: 'unit', unit: 'app.service', maxRestarts: 2, restartWindowSec: 60 }), deps({ exec, monotonicMs: clock.now }));
  t.same(await probe.run(live()), { ok: true, detail: 'first reading: restarts are counted from here', measurements: { restarts: 0, maxRestarts: 2, restartWindowSec: 60, nRestarts: 0 }, provisional: true });
  t.same(exec.calls[0], ['systemctl', 'show', '--property=ActiveState,NRestarts', '--', 'app.service']);

  clock.advance(10_000);
  show = 'ActiveState=active\nNRestarts=2';
  t.equal((await probe.run(live())).ok, true, '2 restarts is not more than 2');
  clock.advance(10_000);
  show = 'ActiveState=activating\nNRestarts=3';
  const flapping = await probe.run(live());
  t.equal(flapping.ok, false);
  t.equal(flapping.detail, 'app.service is activating, not active (systemctl status app.service says why); systemd restarted app.service 3 times within 60 s, more than 2 (journalctl -u app.service says why)');
  t.same(flapping.measurements, { restarts: 3, maxRestarts: 2, restartWindowSec: 60, nRestarts: 3 });

  clock.advance(55_000);
  show = 'ActiveState=active\nNRestarts=3';
  t.same((await probe.run(live())).measurements?.restarts, 1, 'the two restarts seen 75 s ago are out of the window, the one seen 55 s ago is in');
  clock.advance(60_000);
  t.same((await probe.run(live())).measurements?.restarts, 0);

  show = 'ActiveState=failed\nNRestarts=0';
  const failed = await probe.run(live());
  t.match(failed, { ok: false, detail: /^app\.service is failed, not active/, measurements: { restarts: 0 } }, 'a counter reset is no negative count');

  show = 'ActiveState=active';
  t.same(await probe.run(live()), { ok: true }, 'systemd without NRestarts: the state alone');
});

t.test('restartsWithin keeps a bounded history', async (t) => {
  const history: { atMs: number; nRestarts: number }[] = [];
  for (let i = 0; i < 5000; i += 1) restartsWithin(history, { atMs: i * 1000, nRestarts: i }, 86_400_000);
  t.equal(history.length, 1024);
  t.equal(restartsWithin(history, { atMs: 5_000_000, nRestarts: 4999 }, 86_400_000), 1023, 'counted from the oldest kept reading');
});

t.test('unit: systemctl failing is a failing run naming the unit', async (t) => {
  const exec = scriptedExec(() => {
    throw new OutpostError('EXEC_FAILED', 'systemctl show: systemctl is not installed or not on PATH');
  });
  const outcome = await createProbe(healthCheckSchema.parse({ name: 'u', kind: 'unit', unit: 'app.service' }), deps({ exec })).run(live());
  t.same(outcome, { ok: false, detail: 'could not ask systemd about app.service: systemctl show: systemctl is not installed or not on PATH', unmeasured: true }, 'a failure to look: the check fails, its remediation does not run');
});

t.test('mqtt: connected, or within the window on the monotonic clock', async (t) => {
  const clock = fakeClock(1_000_000);
  const check = healthCheckSchema.parse({ name: 'q', kind: 'mqtt', withinSec: 60 });
  t.same(await createProbe(check, deps({ monotonicMs: clock.now })).run(live()), { ok: false, detail: 'no broker configured' });
  let state: { connected: boolean; lastConnectedMs: number | undefined } = { connected: true, lastConnectedMs: 999_000 };
  const probe = createProbe(check, deps({ monotonicMs: clock.now, link: () => state }));
  t.same(await probe.run(live()), { ok: true });
  state = { connected: false, lastConnectedMs: 970_000 };
  t.same(await probe.run(live()), { ok: true, detail: 'disconnected from the broker 30 s ago', measurements: { disconnectedSec: 30, withinSec: 60 }, provisional: true }, 'within the window: passing, but no evidence for probation');
  state = { connected: false, lastConnectedMs: 930_000 };
  t.same(await probe.run(live()), { ok: false, detail: 'disconnected from the broker for 70 s, longer than 60 s', measurements: { disconnectedSec: 70, withinSec: 60 } });
  state = { connected: false, lastConnectedMs: undefined };
  t.match(await probe.run(live()), { ok: false, detail: /never connected/ });
});

t.test('exec: the check\'s name in the environment; a non-zero exit fails with the output\'s end', async (t) => {
  const seen: ExecOptions[] = [];
  const exec = scriptedExec((cmd, args, opts) => {
    seen.push(opts);
    if (typeof opts.stdout === 'function') for (let i = 0; i < 2000; i += 1) opts.stdout(`out ${i}`);
    throw new OutpostError('EXEC_FAILED', `${cmd} ${args.join(' ')}: exit code 3\nerr tail`, { cause: Object.assign(new Error('x'), { exitCode: 3 }) });
  });
  const outcome = await createProbe(healthCheckSchema.parse({ name: 'app-ok', kind: 'exec', command: ['/bin/check', '--fast'] }), deps({ exec })).run(live());
  t.same(seen[0]?.env, { OUTPOST_HEALTH_CHECK: 'app-ok' });
  t.equal(outcome.ok, false);
  t.same(outcome.measurements, { exitCode: 3 });
  t.ok((outcome.detail ?? '').length <= 4097, 'bounded');
  t.match(outcome.detail, /^…/);
  t.match(outcome.detail, /out 1999$/);
});

t.test('a run aborted at its timeout fails saying so', async (t) => {
  const exec = scriptedExec((_cmd, _args, opts) => new Promise((_resolve, reject) => opts.signal?.addEventListener('abort', () => reject(new Error('cancelled')))));
  const controller = new AbortController();
  const running = createProbe(healthCheckSchema.parse({ name: 'u', kind: 'unit', unit: 'app.service', timeoutSec: 5 }), deps({ exec })).run(controller.signal);
  setTimeout(() => controller.abort(), 20);
  t.same(await running, { ok: false, detail: 'unit check u (app.service) did not finish within 5 s and was stopped' });
});
