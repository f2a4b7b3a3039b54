/**
 * Scenario 6, hardware watchdog: during the trial boot of release 2 the kernel hangs (sysrq crash
 * with panic=0, so only the watchdog can help), right after it boots. systemd stops feeding the
 * i6300esb, which resets the board. GRUB still has a trial boot left and boots release 2 again,
 * but the i6300esb reports the reset (bootstatus WDIOF_CARDRESET), so outpost counts it as a failed
 * trial — unlike a power cut, which only restarts probation — rolls release 2 back and reports it.
 * Then release 13, which keeps outpost from starting: the trial guard reboots its unblessed trial
 * boots until GRUB falls back, and outpost fails it for good.
 * Last, in the same boot, outpost's own hardware path (health.hardwareWatchdog, the native addon):
 * first the kernel's softdog, loaded with soft_noboot=1 so a missed deadline is logged instead of
 * resetting (fed while healthy, a wedged event loop lets it fire, magic close on stop), then the
 * i6300esb, which systemd hands over for it (fed, no reset, magic close), and back to systemd.
 */
import t from 'tap';
import type { Test } from 'tap';
import { bootedRelease, nextBoot, outpostReady, recordResult, scenario, settled, startUpdate, until } from './lib/scenario.js';
import type { Vm } from './lib/vm.js';

t.test('i6300esb reset during the trial counts as a failed trial', async (t) => {
  const { vm, world } = await scenario(t, '06-watchdog');
  await vm.start();
  await world.release(2, [1]);
  const since = await vm.mark();
  await startUpdate(vm);
  await vm.waitSerial(/RIG-GRUB boot_counter=1 default=0/, { since, timeoutMs: 600_000 });
  await nextBoot(vm, since);
  // Crash at once: probation passes within seconds of outpost starting, and the trial is armed
  // from the first GRUB line on (counter 1, boot_success 0) — the agent is up before outpost is.
  t.equal(await bootedRelease(vm), 2, 'release 2 on trial');
  t.match(await vm.sh('grub-editenv /boot/grub/grubenv list'), /boot_success=0/, 'trial not yet blessed');
  t.match(await vm.sh('cat /sys/class/watchdog/watchdog0/identity; cat /sys/class/watchdog/watchdog0/state'), /i6300ESB[\s\S]*active/, 'i6300esb active (fed by systemd)');
  t.equal((await vm.sh('cat /sys/class/watchdog/watchdog0/bootstatus')).trim(), '0', 'a normal boot: no watchdog reset reported');
  const crashAt = await vm.mark();
  const t0 = performance.now();
  // panic=0: the crashed kernel hangs forever instead of rebooting itself; only the watchdog resets.
  vm.fire('sysctl -w kernel.panic=0 >/dev/null; sleep 1; echo c > /proc/sysrq-trigger');
  await vm.waitSerial(/sysrq: Trigger a crash|Kernel panic/, { since: crashAt, timeoutMs: 60_000 });
  await vm.waitSerial(/RIG-GRUB/, { since: crashAt, timeoutMs: 180_000 });
  const resetMs = Math.round(performance.now() - t0);
  t.match(await vm.serial(crashAt), /RIG-GRUB boot_counter=0 default=0/, 'GRUB: the second trial boot of release 2');
  await nextBoot(vm, crashAt);
  const s = await settled(vm, 600_000);
  t.equal(await bootedRelease(vm), 1, 'back on release 1');
  t.match(s.last, { result: 'rolledBack', version: 2 }, 'release 2 rolled back');
  t.match(String((s.last as { reason?: string }).reason), /hardware watchdog reset/, `reason: ${(s.last as { reason?: string }).reason}`);

  // Release 13 keeps outpost from starting at all (its config is not JSON: exit 78, no restart),
  // so nothing in outpost can end its trial: outpost-trial-guard.service reboots each unblessed
  // trial boot at its deadline until GRUB falls back, and outpost, back on release 1, fails it.
  const guardSec = 200;
  await vm.sh(`echo OUTPOST_TRIAL_GUARD_SEC=${guardSec} > /etc/default/outpost-trial-guard`);
  await world.release(13, [1]);
  const since13 = await vm.mark();
  const t13 = performance.now();
  await startUpdate(vm);
  await vm.waitSerial(/RIG-GRUB boot_counter=-1 default=1/, { since: since13, timeoutMs: 1_200_000 });
  await nextBoot(vm, since13);
  const s13 = await settled(vm, 600_000);
  const serial13 = await vm.serial(since13);
  t.equal((serial13.match(/RIG-BOOTED release=13/g) ?? []).length, 2, 'release 13 got its 2 trial boots');
  // The guard's own journal line (systemd also echoes the reboot --message).
  t.equal((serial13.match(/outpost-trial-guard\[\d+\]: outpost-trial-guard: trial boot still not blessed \d+s after boot/g) ?? []).length, 2, 'the guard rebooted each of them at its deadline');
  t.equal(await bootedRelease(vm), 1, 'GRUB fell back to release 1');
  t.match(s13.last, { result: 'rolledBack', version: 13 }, 'outpost reports release 13 rolled back');
  t.match(String((s13.last as { reason?: string }).reason), /trial guard rebooted/, 'a failed trial, not power loss');
  t.match(await vm.sh('outpost update check || true'), /release 13(, \d+)* failed its trial on this device and is not retried/, 'never offered again');
  const hardware = await outpostFeedsHardwareWatchdogs(t, vm);
  await recordResult('watchdog', { runtimeWatchdogSec: 15, crashToResetMs: resetMs, trialGuardSec: guardSec, guardFallbackMs: Math.round(performance.now() - t13), bootTimesMs: vm.bootTimesMs, outpostHardwareWatchdog: hardware });
});

/** How long a watchdog outpost feeds waits for a ping: the smallest its config allows. */
const outpostWatchdogSec = 10;
/**
 * The loop is wedged this long (SIGUSR2, OUTPOST_FAULT_BLOCK_LOOP_MS): past the watchdog's
 * timeout. The drop-in lifts systemd's WatchdogSec to 120 s for this part: the 30 s the unit ships
 * with would kill the wedged daemon (its pings stop as well), closing the device without the magic
 * character, and the firing would no longer show that the wedge alone stopped the feeding.
 */
const wedgeMs = 20_000;
const config = '/etc/outpost/config.json';
const dropIn = '/etc/systemd/system/outpost.service.d/50-rig-hardware-watchdog.conf';

/** Points outpost at `/dev/<node>` (or at none) and restarts it; resolves once it armed the device. */
async function outpostWatchdog(vm: Vm, node: string | null): Promise<void> {
  const patch = node === null ? 'delete c.health.hardwareWatchdog' : `c.health.hardwareWatchdog = { device: '/dev/${node}', timeoutSec: ${outpostWatchdogSec} }`;
  await vm.sh(`node -e "const fs = require('fs'); const c = JSON.parse(fs.readFileSync('${config}', 'utf8')); ${patch}; fs.writeFileSync('${config}', JSON.stringify(c, null, 2))"`);
  // As docs/architecture.md says: the unit gets the node (PrivateDevices=no, DeviceAllow=), the udev rule its group.
  await vm.sh(node === null
    ? `rm -f ${dropIn} && systemctl daemon-reload`
    : `mkdir -p $(dirname ${dropIn}) && printf '[Service]\\nPrivateDevices=no\\nDeviceAllow=/dev/${node} rw\\nWatchdogSec=120s\\nEnvironment=OUTPOST_FAULT_BLOCK_LOOP_MS=${wedgeMs}\\n' > ${dropIn} && systemctl daemon-reload`);
  const since = await vm.mark();
  await vm.sh('systemctl restart --no-block outpost');
  await outpostReady(vm);
  if (node !== null) await vm.waitSerial(new RegExp(`"device":"/dev/${node}"[^\\n]*"msg":"hardware watchdog armed"`), { since, timeoutMs: 120_000 });
}

const state = (vm: Vm, node: string) => vm.sh(`cat /sys/class/watchdog/${node}/state`).then((s) => s.trim());
const bootId = (vm: Vm) => vm.sh('cat /proc/sys/kernel/random/boot_id').then((s) => s.trim());
const triggered = async (vm: Vm) => Number((await vm.sh('dmesg | grep -c "softdog: Triggered" || true')).trim());

/**
 * outpost's hardware watchdog path on real drivers, in the running boot (no boot of its own):
 * softdog, then the i6300esb. Says in the output which ran.
 */
async function outpostFeedsHardwareWatchdogs(t: Test, vm: Vm): Promise<{ softdog: string; i6300esb: string; wedgeToTriggerMs: number }> {
  const boot = await bootId(vm);
  // A udev rule gives group outpost the watchdog nodes (the unit runs as user outpost).
  await vm.sh(`printf 'SUBSYSTEM=="watchdog", GROUP="outpost", MODE="0660"\\n' > /etc/udev/rules.d/60-outpost-watchdog.rules
udevadm control --reload-rules
modprobe softdog soft_noboot=1
udevadm trigger --subsystem-match=watchdog --action=add
udevadm settle`);
  const nodes = (await vm.sh('for w in /sys/class/watchdog/watchdog*; do echo "$(basename $w) $(cat $w/identity)"; done')).trim().split('\n');
  const softdog = nodes.find((l) => l.endsWith('Software Watchdog'))?.split(' ')[0];
  const esb = nodes.find((l) => /i6300ESB/.test(l))?.split(' ')[0];
  if (softdog === undefined || esb === undefined) {
    t.fail(`the guest has softdog and the i6300esb (watchdogs: ${nodes.join('; ')})`);
    return { softdog: 'absent', i6300esb: 'absent', wedgeToTriggerMs: 0 };
  }
  t.match(await vm.sh(`stat -c %G /dev/${softdog}`), /outpost/, `softdog loaded as /dev/${softdog}, group outpost`);

  // softdog: fed while healthy, fires when the loop is wedged, disarmed by the magic close on stop.
  await outpostWatchdog(vm, softdog);
  t.equal(await state(vm, softdog), 'active', `outpost armed softdog /dev/${softdog}`);
  t.equal((await vm.sh(`cat /sys/class/watchdog/${softdog}/timeout`)).trim(), String(outpostWatchdogSec), `with its timeout of ${outpostWatchdogSec} s`);
  await new Promise((r) => setTimeout(r, 2.5 * outpostWatchdogSec * 1000));
  t.equal(await triggered(vm), 0, `fed: softdog did not fire in ${2.5 * outpostWatchdogSec} s`);
  const mainPid = async () => (await vm.sh('systemctl show -p MainPID --value outpost')).trim();
  const pid = await mainPid();
  const wedgeMark = await vm.mark();
  const wedgedAt = performance.now();
  await vm.sh(`kill -USR2 ${pid}`);
  const wedgeToTriggerMs = await until('softdog to fire', async () => ((await triggered(vm)) > 0 ? Math.round(performance.now() - wedgedAt) : undefined), wedgeMs + 10_000, 1000);
  t.comment(`event loop wedged for ${wedgeMs / 1000} s: softdog fired (soft_noboot: logged, no reset) ${wedgeToTriggerMs} ms after the wedge`);
  await vm.waitSerial(/"msg":"watchdog pings resume/, { since: wedgeMark, timeoutMs: wedgeMs + 60_000 });
  t.equal(await mainPid(), pid, 'softdog fired while the same outpost process was wedged (not killed, not restarted), which then resumed');
  await vm.sh('systemctl stop outpost');
  t.equal(await state(vm, softdog), 'inactive', 'outpost stopped: the magic close disarmed softdog');
  t.comment(`hardware watchdog fed by outpost: softdog (/dev/${softdog}, soft_noboot=1) ran`);

  // The i6300esb: systemd hands it over (RuntimeWatchdogSec=0 disarms it on re-exec), outpost feeds it.
  await vm.sh("sed -i 's/^RuntimeWatchdogSec=.*/RuntimeWatchdogSec=0/' /etc/systemd/system.conf.d/50-rig.conf && systemctl daemon-reexec");
  t.equal(await state(vm, esb), 'inactive', `systemd let go of the i6300esb (/dev/${esb})`);
  await outpostWatchdog(vm, esb);
  t.equal(await state(vm, esb), 'active', `outpost armed the i6300esb /dev/${esb}`);
  await new Promise((r) => setTimeout(r, 2.5 * outpostWatchdogSec * 1000));
  t.equal(await bootId(vm), boot, `fed: no reset in ${2.5 * outpostWatchdogSec} s`);
  await vm.sh('systemctl stop outpost');
  t.equal(await state(vm, esb), 'inactive', 'outpost stopped: the magic close disarmed the i6300esb');
  t.comment(`hardware watchdog fed by outpost: i6300esb (/dev/${esb}) ran`);

  // Back as the image ships: systemd feeds the i6300esb, outpost opens none.
  await vm.sh("sed -i 's/^RuntimeWatchdogSec=.*/RuntimeWatchdogSec=15s/' /etc/systemd/system.conf.d/50-rig.conf && systemctl daemon-reexec");
  t.equal(await state(vm, esb), 'active', 'systemd feeds the i6300esb again');
  await outpostWatchdog(vm, null);
  t.equal(await bootId(vm), boot, 'all in the same boot');
  return { softdog: `/dev/${softdog}`, i6300esb: `/dev/${esb}`, wedgeToTriggerMs };
}
