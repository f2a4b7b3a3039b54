/**
 * CPU use of one cgroup v2, as the share of one core between two runs: the kernel counts the
 * group's CPU time in `cpu.stat` `usage_usec` (present without the cpu controller enabled), so
 * the rate needs the previous run's reading. Invariant: `previous` is a reading of the cgroup in
 * `previous.cgroup`, taken at `previous.atMs` on the monotonic clock; whenever the counter cannot
 * be compared with it (the group vanished, or its counter went down because it was created anew
 * when the unit restarted) sampling starts again from the current reading.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { errnoCode, messageOf, readOptionalText, readText } from './files.js';
import { Findings, round2 } from './outcome.js';
import { noPsiDetail, parsePressure } from './pressure.js';

/** `usage_usec` of a cgroup's `cpu.stat`. */
export function parseUsageUsec(cpuStat: string): number | undefined {
  const m = /^usage_usec (\d+)$/m.exec(cpuStat);
  return m === null ? undefined : Number(m[1]);
}

/** The 1-minute load average of a /proc/loadavg text. */
export function parseLoad1(loadavg: string): number | undefined {
  const first = loadavg.trim().split(/\s+/)[0];
  const load = Number(first);
  return first === undefined || first === '' || !Number.isFinite(load) ? undefined : load;
}

interface Sample {
  cgroup: string;
  usageUsec: number;
  atMs: number;
}

/** What resolving a unit's cgroup gives when the unit has none: it is not running. */
const notRunning = Symbol('not running');

/** A cgroup's CPU share against `maxPercent`, host CPU PSI against `maxSomeAvg10`, load per CPU against `maxLoadPerCpu`. */
export function cpuProbe(check: CheckOf<'cpu'>, deps: ProbeDeps): CheckProbe {
  const procRoot = deps.procRoot ?? '/proc';
  let previous: Sample | undefined;
  // A unit's ControlGroup is fixed by its name: asked once, again only when the group is gone.
  let unitCgroup: string | undefined;

  async function resolveCgroup(signal: AbortSignal, fresh: boolean): Promise<string | typeof notRunning | { fail: string }> {
    if (check.cgroup !== undefined) return check.cgroup;
    // The schema takes maxPercent only with a unit or a cgroup.
    const unit = check.unit as string;
    if (unitCgroup !== undefined && !fresh) return unitCgroup;
    unitCgroup = undefined;
    let stdout: string;
    try {
      ({ stdout } = await deps.exec.run('systemctl', ['show', '--property=ControlGroup', '--value', '--', unit], { signal, timeoutMs: (check.timeoutSec + 1) * 1000 }));
    } catch (err) {
      if (signal.aborted) throw err;
      // An unprivileged agent asks systemd over D-Bus; without it, a system unit's default place.
      const fallback = `/system.slice/${unit}`;
      if (await readUsage(fallback, signal).then((usage) => usage !== 'gone', () => false)) return fallback;
      return { fail: `could not ask systemd for the cgroup of ${unit} (${messageOf(err)}), and ${join(deps.cgroupRoot, fallback)} does not exist; set the check's cgroup instead` };
    }
    const cgroup = stdout.trim();
    if (cgroup === '') return notRunning;
    unitCgroup = cgroup;
    return cgroup;
  }

  async function readUsage(cgroup: string, signal: AbortSignal): Promise<number | 'gone'> {
    const file = join(deps.cgroupRoot, cgroup, 'cpu.stat');
    let text: string;
    try {
      text = await readText(file, signal);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 'gone';
      throw err;
    }
    const usage = parseUsageUsec(text);
    if (usage === undefined) throw new Error(`${file} has no usage_usec line: is ${deps.cgroupRoot} a cgroup v2 mount?`);
    return usage;
  }

  async function measureGroup(max: number, found: Findings, signal: AbortSignal): Promise<void> {
    let cgroup = await resolveCgroup(signal, false);
    let usage = typeof cgroup === 'string' ? await readUsage(cgroup, signal) : undefined;
    if (usage === 'gone' && check.unit !== undefined) {
      // The unit may have been stopped, or started under a changed unit file: ask again.
      cgroup = await resolveCgroup(signal, true);
      usage = typeof cgroup === 'string' ? await readUsage(cgroup, signal) : undefined;
    }
    if (cgroup === notRunning) {
      // A unit that is not running burns no CPU: whether it should run is a `unit` check's verdict.
      previous = undefined;
      found.measure({ cpuPercent: 0, maxPercent: max });
      found.note(`${check.unit} is not running`);
      return;
    }
    if (typeof cgroup !== 'string') {
      previous = undefined;
      found.unmeasured(cgroup.fail);
      return;
    }
    if (usage === 'gone' || usage === undefined) {
      previous = undefined;
      found.fail(`cgroup ${cgroup} does not exist under ${deps.cgroupRoot}${check.unit === undefined ? '' : ` (is ${check.unit} running?)`}`);
      return;
    }
    const now = deps.monotonicMs();
    const before = previous;
    previous = { cgroup, usageUsec: usage, atMs: now };
    if (before === undefined || before.cgroup !== cgroup || usage < before.usageUsec || now <= before.atMs) {
      found.measure({ maxPercent: max });
      found.provisional(before === undefined ? 'first sample' : `first sample: ${cgroup} was created anew since the last run`);
      return;
    }
    const cpuPercent = round2(((usage - before.usageUsec) / 1000 / (now - before.atMs)) * 100);
    found.measure({ cpuPercent, maxPercent: max });
    if (cpuPercent > max) found.fail(`${check.unit ?? `cgroup ${cgroup}`} used ${cpuPercent}% of one CPU over the last ${round2((now - before.atMs) / 1000)} s, above ${max}%`);
  }

  return {
    async run(signal) {
      const found = new Findings();
      if (check.maxPercent !== undefined) await measureGroup(check.maxPercent, found, signal);
      if (check.maxSomeAvg10 !== undefined) {
        const file = join(procRoot, 'pressure', 'cpu');
        const text = await readOptionalText(file, signal);
        const someAvg10 = text === undefined ? undefined : parsePressure(text).some?.avg10;
        found.measure({ someAvg10, maxSomeAvg10: check.maxSomeAvg10 });
        if (text === undefined) found.fail(noPsiDetail(file));
        else if (someAvg10 === undefined) found.fail(`${file} has no "some" line`);
        else if (someAvg10 > check.maxSomeAvg10) found.fail(`CPU pressure some avg10 is ${someAvg10}%, above ${check.maxSomeAvg10}% (${file}): runnable tasks are waiting for a CPU`);
      }
      if (check.maxLoadPerCpu !== undefined) {
        const file = join(procRoot, 'loadavg');
        const load1 = parseLoad1(await readText(file, signal));
        const cpus = availableParallelism();
        const loadPerCpu = load1 === undefined ? undefined : round2(load1 / cpus);
        found.measure({ load1, cpus, loadPerCpu, maxLoadPerCpu: check.maxLoadPerCpu });
        if (loadPerCpu === undefined) found.fail(`${file} does not start with a load average`);
        else if (loadPerCpu > check.maxLoadPerCpu) found.fail(`1-minute load ${load1} over ${cpus} CPUs is ${loadPerCpu} per CPU, above ${check.maxLoadPerCpu} (${file})`);
      }
      return found.outcome();
    },
  };
}
