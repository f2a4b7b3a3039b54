/**
 * Scenario 1, systemd for real: outpost.service (Type=notify) becomes active through READY=1 with
 * a STATUS= text; a daemon whose event loop is frozen (SIGSTOP) stops its WatchdogSec pings and
 * systemd kills and restarts it; log levels reach the journal as priorities; the daemon reached
 * ostree and GRUB through the socket-activated outpost-installer; the agent runs as its own user
 * with no capability, also after an upgrade from a root agent left root-owned state;
 * `systemd-analyze security` exposure of both units goes to bench results. Then health on the
 * booted gateway: a unit burning a CPU (rig-burn.service, in rig.slice) is restarted by outpost's
 * `cpu` check through the installer and the check passes again; a failing check reboots the
 * gateway once, and after the reboot the breaker (maxReboots 1) holds: no second reboot, the
 * report asks for attention until `outpost health reset-breaker`. The reboot comes last.
 */
import t from 'tap';
import { accel } from './lib/vm.js';
import { nextBoot, outpostReady, recordResult, scenario, until } from './lib/scenario.js';

const show = async (vm: import('./lib/vm.js').Vm): Promise<Record<string, string>> => {
  const out = await vm.sh('systemctl show outpost.service -p ActiveState -p SubState -p StatusText -p MainPID -p NRestarts -p Type -p Result -p ActiveEnterTimestampMonotonic -p ExecMainStartTimestampMonotonic');
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
};

t.test('systemd: READY with STATUS, watchdog restart, security exposure', async (t) => {
  const { vm, image } = await scenario(t, '01-systemd');
  const t0 = performance.now();
  await vm.start();
  const agentMs = Math.round(performance.now() - t0);
  const first = await until('outpost active', async () => {
    const s = await show(vm);
    return s.ActiveState === 'active' ? s : undefined;
  }, 120_000, 500);
  const readyWallMs = Math.round(performance.now() - t0);
  t.equal(first.Type, 'notify', 'Type=notify: active only after READY=1');
  t.equal(first.SubState, 'running');
  t.ok((first.StatusText ?? '').length > 0, `STATUS= text: "${first.StatusText}"`);
  const startToReadyMs = Math.round((Number(first.ActiveEnterTimestampMonotonic) - Number(first.ExecMainStartTimestampMonotonic)) / 1000);
  const uptime = Number((await vm.sh("cut -d' ' -f1 /proc/uptime")).trim());

  // Freeze the event loop: the WatchdogSec pings stop, systemd must SIGABRT and restart it.
  const pid = first.MainPID ?? '';
  const restarts = Number(first.NRestarts);
  await vm.sh(`kill -STOP ${pid}`);
  const tStop = performance.now();
  const after = await until('restart after watchdog', async () => {
    const s = await show(vm);
    return s.MainPID !== pid && s.ActiveState === 'active' && Number(s.NRestarts) > restarts ? s : undefined;
  }, 90_000, 1000);
  const watchdogRestartMs = Math.round(performance.now() - tStop);
  const journal = await vm.sh('journalctl -u outpost.service --no-pager -o cat | grep -i watchdog || true');
  t.match(journal, /[Ww]atchdog timeout/, 'systemd logged the watchdog timeout');
  t.equal(Number(after.NRestarts), restarts + 1, 'restarted exactly once');
  t.ok((after.StatusText ?? '').length > 0, 'the new process reported READY with STATUS again');

  // Each line's level reaches the journal as its PRIORITY (the `<N>` prefix), so -p filters work.
  const levelsAt = async (priorities: string) => new Set((await vm.sh(`journalctl -u outpost.service -p ${priorities} --no-pager -o cat | grep -o '"level":"[a-z]*"' || true`)).match(/[a-z]+(?="$)/gm) ?? []);
  // The warning may come a moment after READY: wait for it (bounded).
  const urgent = await until('a warning in the journal', async () => {
    const levels = await levelsAt('0..4');
    return levels.has('warn') ? levels : undefined;
  }, 30_000, 1000).catch(async () => levelsAt('0..4'));
  const routine = await levelsAt('5..7');
  // The restarted daemon warns that the one before it did not stop cleanly (its run marker was left).
  t.ok(urgent.has('warn'), `journalctl -p warning shows outpost's warnings (${[...urgent].join(', ')})`);
  t.notOk(urgent.has('info') || urgent.has('debug'), 'and no info or debug lines');
  t.ok(routine.has('info') && !routine.has('warn') && !routine.has('error'), `info lines stay below it (${[...routine].join(', ')})`);

  // The agent is unprivileged (issue 18): its own user, no capability, not even in its bounding set.
  const uid = (await vm.sh('id -u outpost')).trim();
  const procStatus = await vm.sh(`grep -E '^(Uid|CapEff|CapBnd):' /proc/${after.MainPID ?? ''}/status`);
  t.match(procStatus, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'), `outpost runs as the outpost user (uid ${uid})`);
  t.match(procStatus, /^CapEff:\s+0+$/m, 'with no effective capability');
  t.match(procStatus, /^CapBnd:\s+0+$/m, 'and none it could gain');
  // A device upgraded from a release whose agent ran as root: at the next boot tmpfiles runs, then
  // systemd hands the root-owned state over (StateDirectory=), and the agent, as its user, still
  // reads its mTLS key and reaches the broker.
  await vm.sh('systemctl stop outpost.service && chown -R root:root /var/lib/outpost && systemd-tmpfiles --create && systemctl start outpost.service', 120_000);
  t.equal((await vm.sh('find /var/lib/outpost ! -user outpost | wc -l')).trim(), '0', 'the state a root agent left is the outpost user\'s');
  const linked = await until('link connected as the outpost user', async () => {
    const status = JSON.parse(await vm.sh('outpost status --json', 20_000)) as { link: { state: string } };
    return status.link.state === 'connected' ? status : undefined;
  }, 60_000, 1000);
  t.equal(linked.link.state, 'connected', 'mTLS link up: the key is readable by the agent\'s group');

  const exposure = async (unit: string) => {
    const security = await vm.exec(`systemd-analyze security ${unit} --no-pager`);
    const found = new RegExp(`Overall exposure level for ${unit.replace('.', '\\.')}:\\s*([\\d.]+)\\s*(\\S+)`).exec(security.out);
    t.ok(found, `systemd-analyze security printed an exposure level for ${unit}: ${found?.[1]} ${found?.[2]}`);
    return found;
  };
  const m = await exposure('outpost.service');
  t.ok(Number(m?.[1]) <= 2.0, `the agent's exposure ${m?.[1]} is at most 2.0`);

  // The daemon reached ostree and GRUB through the socket-activated installer, which logged each request.
  const installerLog = await vm.sh('journalctl -u outpost-installer.service --no-pager -o cat');
  t.match(installerLog, /"op":"boot\.bootedCommit"[^\n]*"msg":"request"/, 'outpost-installer.socket started the installer, which answered the daemon');
  t.match(installerLog, /"listen":"systemd socket"/, 'on the socket systemd passed');
  const installerExposure = await exposure('outpost-installer.service');
  await recordResult('systemd', {
    accel: await accel(),
    bootToAgentWallMs: agentMs,
    bootToReadyWallMs: readyWallMs,
    guestUptimeAtReadySec: uptime,
    execStartToReadyMs: startToReadyMs,
    statusText: first.StatusText,
    watchdogSec: 30,
    sigstopToRestartedMs: watchdogRestartMs,
    securityExposure: m ? Number(m[1]) : null,
    securityRating: m ? m[2] : null,
    installerSecurityExposure: installerExposure ? Number(installerExposure[1]) : null,
    installerSecurityRating: installerExposure ? installerExposure[2] : null,
    imageTimingsMs: image.timings,
  });

  // The hardware watchdog that ran under all of this: the i6300esb, fed by systemd (RuntimeWatchdogSec).
  const watchdogIdentity = (await vm.sh('cat /sys/class/watchdog/watchdog0/identity 2>/dev/null || true')).trim();
  const runtimeWatchdog = (await vm.sh('systemctl show -p RuntimeWatchdogUSec --value')).trim();
  t.match(watchdogIdentity, /i6300ESB/i, `the guest's watchdog0 is the i6300esb (${watchdogIdentity})`);
  t.comment(`hardware watchdog: ${watchdogIdentity || 'none'} (qemu -device i6300esb, -action watchdog=reset), fed by systemd with RuntimeWatchdogSec=${runtimeWatchdog}`);

  // A unit burning a CPU is restarted by outpost's `cpu` check (its cgroup's cpu.stat) through the installer.
  const health = async (): Promise<HealthDoc> => {
    // 0 ok/degraded, 1 failed, 75 before the first verdicts: the JSON is what counts.
    const r = await vm.exec('outpost health --json', 20_000);
    return JSON.parse(r.out) as HealthDoc;
  };
  const checkOf = (doc: HealthDoc, name: string) => doc.checks.find((c) => c.name === name);
  const burnBefore = await until('rig-burn-cpu has a verdict', async () => {
    const c = checkOf(await health(), 'rig-burn-cpu');
    return c !== undefined && c.status !== 'unknown' ? c : undefined;
  }, 60_000, 1000);
  t.equal((await vm.exec('test -f /sys/fs/cgroup/rig.slice/cpu.stat', 20_000)).rc, 0, 'rig.slice, the cgroup the cpu check measures, exists from boot');
  t.equal(burnBefore.status, 'passing', `before rig-burn.service runs, its cpu check passes (${burnBefore.detail ?? ''})`);
  const unitShow = async (): Promise<Record<string, string>> => {
    const out = await vm.sh('systemctl show rig-burn.service -p ActiveState -p MainPID -p InvocationID -p ExecMainStartTimestampMonotonic');
    return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  };
  const journalMark = (await vm.sh('journalctl -u outpost.service --show-cursor -n 1 -o cat | sed -n "s/^-- cursor: //p"')).trim();
  await vm.sh('systemctl start rig-burn.service');
  const tBurn = performance.now();
  const burning = await unitShow();
  t.equal(burning.ActiveState, 'active', 'rig-burn.service started');
  const burnMarker = await until('rig-burn.service burning', async () => ((await vm.exec('test -e /run/rig-burned', 20_000)).rc === 0 ? true : undefined), 30_000, 500);
  t.ok(burnMarker, 'and is burning (first start of this boot: /run/rig-burned)');
  const restarted = await until('rig-burn.service restarted by outpost', async () => {
    const s = await unitShow();
    return s.ActiveState === 'active' && s.InvocationID !== burning.InvocationID && s.MainPID !== burning.MainPID
      && Number(s.ExecMainStartTimestampMonotonic) > Number(burning.ExecMainStartTimestampMonotonic) ? s : undefined;
  }, 180_000, 1000);
  const burnToRestartMs = Math.round(performance.now() - tBurn);
  t.not(restarted.InvocationID, burning.InvocationID, `rig-burn.service was started anew (pid ${burning.MainPID} -> ${restarted.MainPID}) ${burnToRestartMs} ms after it began burning`);
  const since = journalMark === '' ? '' : `--after-cursor='${journalMark}'`;
  const readLog = async () => (await vm.sh(`journalctl -u outpost.service ${since} --no-pager -o cat`)).split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l.slice(l.indexOf('{'))) as LogLine];
    } catch {
      return [];
    }
  });
  // outpost logs the remediation once the installer's restart has returned: a moment after systemd shows it.
  const burnLog = await until('the remediation in outpost\'s journal', async () => {
    const lines = await readLog();
    return lines.some((l) => (l.msg ?? '').startsWith('health remediation of rig-burn-cpu')) ? lines : undefined;
  }, 60_000, 1000);
  const failing = burnLog.find((l) => l.msg === 'health check rig-burn-cpu is failing');
  const cpuPercent = failing?.measurements?.cpuPercent;
  t.ok(cpuPercent !== undefined && cpuPercent > 50, `outpost logged the check failing with the measurement cpuPercent ${cpuPercent} > 50 (${failing?.detail ?? 'no such line'})`);
  const remediated = burnLog.find((l) => l.msg === 'health remediation of rig-burn-cpu: restart-unit done');
  t.ok(remediated, 'and logged the remediation: restart-unit done');
  t.equal(remediated?.attempt, 1, 'on its first attempt');
  const installerRestart = await vm.sh('journalctl -u outpost-installer.service --no-pager -o cat | grep \'"op":"unit.restart"\' | grep -c rig-burn.service || true');
  t.ok(Number(installerRestart.trim()) >= 1, 'the restart went through the installer (unit.restart rig-burn.service)');
  const tRestarted = performance.now();
  const recovered = await until('rig-burn-cpu passing again', async () => {
    const c = checkOf(await health(), 'rig-burn-cpu');
    return c?.status === 'passing' && c.lastRunAt !== undefined && Date.parse(c.since) > Date.parse(failing?.time ?? '0') ? c : undefined;
  }, 120_000, 1000);
  const restartToPassingMs = Math.round(performance.now() - tRestarted);
  t.equal(recovered.status, 'passing', `after the restart the idle unit passes again (${recovered.detail ?? ''}; cpuPercent ${recovered.measurements?.cpuPercent ?? 'n/a'})`);
  await vm.sh('systemctl stop rig-burn.service');

  // A failing check reboots the gateway once; after the reboot it fails again, but the breaker
  // (maxReboots 1 per day) is open: no second reboot, the report asks for attention until reset.
  const bootIdOf = async () => (await vm.sh('cat /proc/sys/kernel/random/boot_id')).trim();
  const bootBefore = await bootIdOf();
  const trigger = await until('rig-reboot-trigger passing', async () => {
    const c = checkOf(await health(), 'rig-reboot-trigger');
    return c?.status === 'passing' ? c : undefined;
  }, 60_000, 1000);
  t.equal(trigger.status, 'passing', 'rig-reboot-trigger passes while /var/lib/rig/health-fail is absent');
  const beforeBreaker = await health();
  t.equal(beforeBreaker.rebootBreaker.open, false, 'the breaker is closed before');
  const serialMark = await vm.mark();
  await vm.sh('install -d -m 0755 /var/lib/rig && touch /var/lib/rig/health-fail && chmod 0644 /var/lib/rig/health-fail && sync');
  const tFail = performance.now();
  await nextBoot(vm, serialMark, 600_000);
  const failToRebootMs = Math.round(performance.now() - tFail);
  const bootAfter = await bootIdOf();
  t.not(bootAfter, bootBefore, `outpost rebooted the guest ${failToRebootMs} ms after the file appeared`);
  // The rig's agent prints the boot id once it runs: one new boot id, whatever restarts it had.
  const bootsSince = async () => [...new Set([...(await vm.serial(serialMark)).matchAll(/RIG-AGENT-READY boot_id=(\S+)/g)].map((m) => m[1]))];
  t.same(await bootsSince(), [bootAfter], 'exactly one boot');
  await outpostReady(vm);
  const tBack = performance.now();
  const held = await until('check failing again with the breaker open', async () => {
    const doc = await health();
    return checkOf(doc, 'rig-reboot-trigger')?.status === 'failing' && doc.rebootBreaker.open && doc.attention !== undefined ? doc : undefined;
  }, 180_000, 1000);
  const failingAgainMs = Math.round(performance.now() - tBack);
  t.equal(checkOf(held, 'rig-reboot-trigger')?.status, 'failing', 'after the reboot the check fails again');
  t.equal(held.rebootBreaker.open, true, `the reboot breaker is open (${held.rebootBreaker.recent} of ${held.rebootBreaker.maxReboots} within ${held.rebootBreaker.windowSec} s)`);
  t.ok((held.attention ?? '').length > 0, `the report asks for attention: "${held.attention}"`);
  // The breaker is open (attention); the image's 5 s remediation backoff brings two or three
  // attempts within the hold, each of which would reboot without the breaker.
  const holdMs = 20_000;
  await new Promise((r) => setTimeout(r, holdMs));
  t.equal(await bootIdOf(), bootAfter, `no second reboot within ${holdMs / 1000} s of the check failing again`);
  t.same(await bootsSince(), [bootAfter], 'the serial console shows no further boot');
  const thisBootLog = await vm.sh('journalctl -b -u outpost.service --no-pager -o cat');
  t.match(thisBootLog, /health remediation of rig-reboot-trigger: reboot needs-attention/, 'outpost logged the reboot it did not do (needs-attention)');
  const previousBootLog = await vm.sh('journalctl -b -1 -u outpost.service --no-pager -o cat || true');
  t.match(previousBootLog, /health check rig-reboot-trigger is failing/, 'the boot before logged the check failing before its reboot');
  const stillHeld = await health();
  t.equal(stillHeld.rebootBreaker.open, true, 'the breaker is still open after the wait');
  // The file goes first, and the breaker is reset only once the check passes: a reset while it
  // still fails would let its next remediation attempt reboot.
  const tReset = performance.now();
  await vm.sh('rm -f /var/lib/rig/health-fail');
  const cleared = await until('rig-reboot-trigger passing after the file is gone', async () => {
    const doc = await health();
    return checkOf(doc, 'rig-reboot-trigger')?.status === 'passing' ? doc : undefined;
  }, 60_000, 1000);
  const removeToPassingMs = Math.round(performance.now() - tReset);
  t.equal(cleared.attention, undefined, 'with the check passing no attention is asked');
  t.equal(cleared.rebootBreaker.open, true, 'but the breaker stays open until reset');
  const reset = JSON.parse(await vm.sh('outpost health reset-breaker --json', 20_000)) as HealthDoc;
  t.equal(reset.rebootBreaker.open, false, 'outpost health reset-breaker closed the breaker');
  const closed = await health();
  t.equal(closed.rebootBreaker.open, false, 'and GET /v1/health says so too');
  t.equal(checkOf(closed, 'rig-reboot-trigger')?.status, 'passing', 'the check still passes');
  t.equal(await bootIdOf(), bootAfter, 'still the same boot');

  await recordResult('systemd-health', {
    accel: await accel(),
    hardwareWatchdog: watchdogIdentity,
    runtimeWatchdog,
    cpuCheck: { intervalSec: 2, failAfter: 2, maxPercent: 50, measuredCpuPercent: cpuPercent ?? null },
    burnStartToRestartedMs: burnToRestartMs,
    restartToPassingMs,
    failFileToRebootedMs: failToRebootMs,
    rebootedToBreakerHeldMs: failingAgainMs,
    breakerHoldObservedMs: holdMs,
    removeToPassingMs,
  });
});

interface HealthDoc {
  status: string;
  checks: { name: string; status: string; since: string; lastRunAt?: string; detail?: string; measurements?: Record<string, number> }[];
  rebootBreaker: { open: boolean; recent: number; maxReboots: number; windowSec: number; reason?: string };
  attention?: string;
}

interface LogLine {
  msg?: string;
  time?: string;
  detail?: string;
  attempt?: number;
  measurements?: Record<string, number>;
}
