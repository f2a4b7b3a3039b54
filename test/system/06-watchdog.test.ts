/**
 * Scenario 6, hardware watchdog: during the trial boot of release 2 the kernel hangs (sysrq crash
 * with panic=0, so only the watchdog can help), right after it boots. systemd stops feeding the
 * i6300esb, which resets the board. GRUB still has a trial boot left and boots release 2 again,
 * but the i6300esb reports the reset (bootstatus WDIOF_CARDRESET), so outpost counts it as a failed
 * trial — unlike a power cut, which only restarts probation — rolls release 2 back and reports it.
 * Then release 13, which keeps outpost from starting: the trial guard reboots its unblessed trial
 * boots until GRUB falls back, and outpost fails it for good.
 */
import t from 'tap';
import { bootedRelease, nextBoot, recordResult, scenario, settled, startUpdate } from './lib/scenario.js';

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
  await recordResult('watchdog', { runtimeWatchdogSec: 15, crashToResetMs: resetMs, trialGuardSec: guardSec, guardFallbackMs: Math.round(performance.now() - t13), bootTimesMs: vm.bootTimesMs });
});
