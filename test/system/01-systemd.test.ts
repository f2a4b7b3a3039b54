/**
 * Scenario 1, systemd for real: outpost.service (Type=notify) becomes active through READY=1 with
 * a STATUS= text; a daemon whose event loop is frozen (SIGSTOP) stops its WatchdogSec pings and
 * systemd kills and restarts it; log levels reach the journal as priorities; the daemon reached
 * ostree and GRUB through the socket-activated outpost-installer; the agent runs as its own user
 * with no capability, also after an upgrade from a root agent left root-owned state;
 * `systemd-analyze security` exposure of both units goes to bench results.
 */
import t from 'tap';
import { accel } from './lib/vm.js';
import { recordResult, scenario, until } from './lib/scenario.js';

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
  const urgent = await levelsAt('0..4');
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
});
