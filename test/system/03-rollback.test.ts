/**
 * Scenarios 3 and 4 on one gateway (each needs v2 committed first, so they share the v1 -> v2 run):
 * 3. release 3 boots but its health check fails: probation fails, outpost rolls back to v2 on its
 *    own and says why, with the broker down the whole time;
 * 4. release 4 never reaches userspace (PID 1 exits -> panic -> reboot): GRUB's counter runs out
 *    and it boots v2; outpost reports the failed trial and never tries release 4 again.
 */
import t from 'tap';
import { bootedRelease, nextBoot, recordResult, scenario, settled, until, updateStatus, startUpdate } from './lib/scenario.js';
import type { Vm } from './lib/vm.js';

async function update(vm: Vm, timeoutMs = 900_000): Promise<{ ms: number; status: Awaited<ReturnType<typeof updateStatus>> }> {
  const t0 = performance.now();
  const since = await vm.mark();
  await startUpdate(vm);
  // Every attempt reboots at least once; then wait until the machine is idle on a booted system.
  await nextBoot(vm, since, timeoutMs);
  const status = await settled(vm, timeoutMs);
  return { ms: Math.round(performance.now() - t0), status };
}

t.test('bad release rolls back (broker down); never-booting release falls back in GRUB', async (t) => {
  const { vm, world, image } = await scenario(t, '03-rollback');
  const commits = image.commits;
  await vm.start();
  await world.release(2, [1]);
  const v2 = await update(vm);
  t.match(v2.status.last, { result: 'committed', version: 2 }, 'on v2');

  // Scenario 3: health check of release 3 fails; the broker is down for the whole attempt.
  await world.broker.stop();
  await world.release(3, [2]);
  const since3 = await vm.mark();
  const v3 = await update(vm);
  // settled() waits through the probation and the rollback reboot: idle means finished.
  const s3 = v3.status;
  t.equal(await bootedRelease(vm), 2, 'back on release 2');
  t.match(s3.last, { result: 'rolledBack', version: 3 }, 'outpost rolled release 3 back');
  t.match(String((s3.last as { reason?: string }).reason), /rig-health|health/, `reason names the failed check: ${(s3.last as { reason?: string }).reason}`);
  const serial3 = await vm.serial(since3);
  t.equal((serial3.match(/RIG-BOOTED release=3/g) ?? []).length, 1, 'release 3 was booted exactly once');
  const env3 = await vm.sh('grub-editenv /boot/grub/grubenv list');
  t.notMatch(env3, /boot_counter/, 'no trial armed after the rollback');
  await world.broker.start();
  const state = await until('retained state reports the rollback', async () => {
    const doc = await world.retainedState();
    return doc !== null && /rolledBack/.test(JSON.stringify(doc)) ? doc : undefined;
  }, 90_000, 3000).catch(() => null);
  t.ok(state, 'after the broker is back, the retained state reports the rollback');

  // Scenario 4: release 4's PID 1 exits at once; only GRUB can bring the gateway back.
  await world.release(4, [2]);
  const since4 = await vm.mark();
  const t4 = performance.now();
  await startUpdate(vm);
  await vm.waitSerial(/Kernel panic|Attempted to kill init/, { since: since4, timeoutMs: 600_000 });
  await vm.waitSerial(/RIG-GRUB boot_counter=-1 default=1/, { since: since4, timeoutMs: 120_000 });
  await nextBoot(vm, since4);
  const s4 = await settled(vm);
  const fallbackMs = Math.round(performance.now() - t4);
  t.equal(await bootedRelease(vm), 2, 'GRUB fell back to release 2');
  t.match(s4.last, { result: 'rolledBack', version: 4 }, 'outpost reports release 4 as rolled back');
  t.match(String((s4.last as { reason?: string }).reason), /never came up/, 'reason: never came up');
  // After the fallback nothing may point at release 4 any more: not the ostree default (a later
  // update would keep it as its fallback entry) and not GRUB's spent counter.
  const env4 = await vm.sh('grub-editenv /boot/grub/grubenv list');
  t.notMatch(env4, /boot_counter/, 'spent boot counter cleared');
  const dep4 = await vm.sh('ostree admin status');
  t.notMatch(dep4, new RegExp(String(commits.get(4))), 'the deployment that never came up is gone');
  // Never retried: an explicit apply must not start release 4 again.
  const again = await vm.exec('outpost update apply');
  t.comment(`apply after fallback: rc=${again.rc} ${again.out.trim()}`);
  await new Promise((r) => setTimeout(r, 5000));
  const after = await updateStatus(vm);
  t.equal(after.state, 'idle', 'no new attempt');
  const serialAll = await vm.serial(since4);
  t.equal((serialAll.match(/RIG-GRUB boot_counter=0 default=0/g) ?? []).length, 1, 'release 4 got exactly one trial boot');
  await recordResult('rollback', { update2Ms: v2.ms, badReleaseRollbackMs: v3.ms, neverBootsFallbackMs: fallbackMs, bootTimesMs: vm.bootTimesMs });
});
