/**
 * The health service in the real daemon: a CPU-burning process found by its cgroup and restarted
 * by the check's remediation, reported with the measurements; the reboot breaker opening after N
 * remediation reboots (the simulated bootloader's, which stop the daemon) and staying open across
 * a restart; `outpost health` and its exit code.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { deviceWorld, type DeviceWorld } from '../../../scripts/world/device.js';
import { createOtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';
import { cgroup2Mount, cgroupSkipReason } from '../../fixtures/cgroup.js';

const cgroupRoot = cgroup2Mount();
const cgroupSkip = cgroupSkipReason(cgroupRoot);

interface Report {
  status: string;
  checks: { name: string; status: string; detail?: string; measurements?: Record<string, number> }[];
  rebootBreaker: { open: boolean; recent: number };
  attention?: string;
}

async function health(world: DeviceWorld): Promise<{ exitCode: number | undefined; report: Report }> {
  const r = await world.cli(['health', '--json']);
  return { exitCode: r.exitCode, report: JSON.parse(r.stdout) as Report };
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');

/** Kills every process of the cgroup, then removes it (the kernel lets go of reaped processes a moment later). */
async function removeCgroup(dir: string): Promise<void> {
  for (let i = 0; ; i += 1) {
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if (i === 100) throw err;
      await sleep(20);
    }
  }
}

t.test('a CPU-burning service is found by its cgroup, restarted by the remediation, and reported with the measurements', { skip: cgroupSkip }, async (t: Test) => {
  const root = cgroupRoot as string;
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const cgroup = `/outpost-daemon-${process.pid}`;
  const dir = join(root, cgroup);
  mkdirSync(dir);
  t.teardown(() => removeCgroup(dir));
  const burner = spawn(process.execPath, ['-e', 'for(;;){}'], { stdio: 'ignore' });
  t.teardown(() => void burner.kill('SIGKILL'));
  writeFileSync(join(dir, 'cgroup.procs'), `${burner.pid}\n`);
  // "Restarting the service": what systemctl restart does to a unit, for a group of plain processes.
  const restarts = join(world.dir, 'restarts');
  const restart = join(world.dir, 'restart.sh');
  writeFileSync(restart, `#!/bin/sh\nfor p in $(cat ${dir}/cgroup.procs); do kill -9 "$p"; done\nsleep 300 >/dev/null 2>&1 </dev/null &\necho $! > ${dir}/cgroup.procs\necho restarted >> ${restarts}\n`, { mode: 0o755 });
  world.writeConfig({
    health: {
      cgroupRoot: root,
      backoffMinSec: 60,
      checks: [{ name: 'burn', kind: 'cpu', cgroup, maxPercent: 50, intervalSec: 1, failAfter: 2, remediation: { action: 'exec', command: [restart] } }],
    },
  });
  const daemon = world.run();
  t.teardown(() => void daemon.kill('SIGKILL'));

  await until('the burner killed by the remediation', async () => (alive(burner.pid!) ? undefined : true), 20_000);
  t.equal(readFileSync(restarts, 'utf8'), 'restarted\n', 'restarted once');
  const passing = await until('the check passing again', async () => {
    const { exitCode, report } = await health(world);
    return report.checks[0]?.status === 'passing' && report.checks[0].detail === undefined ? { exitCode, report } : undefined;
  }, 20_000);
  t.equal(passing.exitCode, 0, 'outpost health exits 0 when everything passes');
  t.ok((passing.report.checks[0]?.measurements?.cpuPercent ?? 100) < 50, 'the restarted service is idle');

  daemon.kill('SIGTERM');
  const { all } = await daemon;
  const events = (all ?? '').split('\n').filter((line) => line.includes('health event')).map((line) => JSON.parse((JSON.parse(line) as { event: string }).event) as Record<string, unknown>);
  const failing = events.find((e) => e.type === 'health-check-changed' && e.to === 'failing');
  t.match(failing, { check: 'burn', severity: 'wanted', from: 'passing', measurements: { maxPercent: 50 } }, 'the transition is an event');
  t.ok(((failing?.measurements as Record<string, number> | undefined)?.cpuPercent ?? 0) > 50, `with the CPU share that triggered it (${JSON.stringify(failing?.measurements)})`);
  const remediation = events.find((e) => e.type === 'health-remediation');
  t.match(remediation, { check: 'burn', action: 'exec', outcome: 'done', attempt: 1, measurements: { maxPercent: 50 } }, 'the remediation is an event with the measurements');
  t.ok(((remediation?.measurements as Record<string, number> | undefined)?.cpuPercent ?? 0) > 50);
});

t.test('the reboot breaker opens after maxReboots remediation reboots, stays open across a restart, and outpost health says so', async (t: Test) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  const device = otaDevice(ota);
  t.teardown(() => device.cleanup());
  const broken = join(device.world.dir, 'broken');
  writeFileSync(broken, '');
  device.world.writeConfig({
    update: ota.updateConfig(),
    health: {
      backoffMinSec: 1,
      rebootBreaker: { maxReboots: 2, windowSec: 3600 },
      checks: [{ name: 'app', kind: 'exec', command: ['/usr/bin/test', '!', '-e', broken], intervalSec: 1, failAfter: 1, severity: 'required', remediation: { action: 'reboot' } }],
    },
  });

  // Each remediation reboot of the simulated bootloader stops the daemon; boot it again, as the board would.
  for (let reboot = 1; reboot <= 2; reboot += 1) {
    const { daemon } = await device.boot();
    const result = await daemon;
    t.match(result.all, /simulated reboot: health check app is failing/, `remediation reboot ${reboot}`);
  }
  const { daemon } = await device.boot();
  const open = await until('the breaker open', async () => {
    const { exitCode, report } = await health(device.world);
    return report.attention ? { exitCode, report } : undefined;
  }, 20_000);
  t.equal(open.exitCode, 1, 'outpost health exits 1: a required check fails');
  t.match(open.report, { status: 'failed', rebootBreaker: { open: true, recent: 2 }, attention: /2 remediation reboots within 3600 s \(at most 2\)/ });
  await sleep(3000);
  t.equal(daemon.exitCode, null, 'no third reboot: the daemon stays up, reachable');

  daemon.kill('SIGTERM');
  t.equal((await daemon).exitCode, 0);
  const again = await device.boot();
  const reopened = await until('the breaker open after the restart', async () => {
    const { report } = await health(device.world);
    return report.checks[0]?.status === 'failing' ? report : undefined;
  }, 20_000);
  t.match(reopened, { rebootBreaker: { open: true, recent: 2 } }, 'still open after a restart: the records are in the store');
  await sleep(2500);
  t.equal(again.daemon.exitCode, null, 'and still no reboot');

  const reset = await device.world.cli(['health', 'reset-breaker', '--json']);
  t.equal(reset.exitCode, 0, reset.stderr);
  const afterReset = await again.daemon;
  t.match(afterReset.all, /simulated reboot: health check app is failing/, 'once reset, the next failing run reboots again');
});

t.test('an http check works under the unit\'s node flags (--jitless: no WebAssembly, so no fetch)', async (t: Test) => {
  const { createServer } = await import('node:http');
  const server = createServer((_req, res) => res.end('{"status":"up"}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as import('node:net').AddressInfo;
  const world = deviceWorld();
  t.teardown(world.cleanup);
  world.writeConfig({ health: { checks: [{ name: 'api', kind: 'http', url: `http://127.0.0.1:${port}/health`, bodyMatch: '"up"', intervalSec: 1, severity: 'required' }] } });
  // As systemd/outpost.service starts it.
  const daemon = world.run({ NODE_OPTIONS: '--max-semi-space-size=1 --max-old-space-size=64 --jitless' });
  t.teardown(() => void daemon.kill('SIGKILL'));
  const passing = await until('the http check passing', async () => {
    if (daemon.exitCode !== null) return 'exited';
    const r = await world.cli(['health', '--json']);
    return r.exitCode === 0 && (JSON.parse(r.stdout) as Report).checks[0]?.status === 'passing' ? 'passing' : undefined;
  }, 20_000);
  t.equal(passing, 'passing', 'the daemon runs the check and stays up');
  daemon.kill('SIGTERM');
  t.equal((await daemon).exitCode, 0);
});
