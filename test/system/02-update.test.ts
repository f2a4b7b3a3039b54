/**
 * Scenario 2, update v1 -> v2: outpostctl signs release 2 with a static delta from v1; the device
 * fetches it through the forwarded HTTP port, deploys, reboots through systemd, GRUB boots v2 on
 * trial, probation passes, outpost commits. Then: v2 booted, v1 the rollback, the broker's
 * retained state says 2.
 */
import t from 'tap';
import { bootedRelease, nextBoot, ostreeStatus, recordResult, scenario, settled, until, updateStatus, startUpdate } from './lib/scenario.js';

t.test('update v1 -> v2 with a static delta, trial boot, probation, commit', async (t) => {
  const { vm, world, image } = await scenario(t, '02-update');
  await vm.start();
  t.equal(await bootedRelease(vm), 1, 'boots release 1');
  await until('outpost active', async () => ((await vm.exec('systemctl is-active outpost')).out.trim() === 'active' ? true : undefined), 120_000, 1000);
  let t0 = performance.now();
  await world.release(2, [1]);
  const releaseMs = Math.round(performance.now() - t0);

  const since = await vm.mark();
  t0 = performance.now();
  await startUpdate(vm);
  await vm.waitSerial(/RIG-GRUB boot_counter=0 default=0/, { since, timeoutMs: 600_000 });
  const toRebootMs = Math.round(performance.now() - t0);
  await nextBoot(vm, since);
  const s = await settled(vm);
  const cycleMs = Math.round(performance.now() - t0);
  t.equal(await bootedRelease(vm), 2, 'release 2 booted');
  t.match(s.last, { result: 'committed', version: 2 }, 'outpost committed release 2');
  t.equal(s.installedVersion, 2);
  const deltaFetched = world.server.requests.some((r) => r.path.includes('/targets/deltas/') && r.status < 300);
  t.ok(deltaFetched, 'the static delta came over the forwarded HTTP port');
  const status = await ostreeStatus(vm);
  const lines = status.split('\n').filter((l) => /^[* ] \S+ [0-9a-f]{64}\.\d/.test(l));
  t.match(lines[0], new RegExp(`^\\* \\S+ ${image.commits.get(2)}`), 'v2 is booted and the default');
  t.match(lines[1], new RegExp(`^  \\S+ ${image.commits.get(1)}`), 'v1 is the rollback');
  t.match(status, /rollback/i);
  const env = await vm.sh('grub-editenv /boot/grub/grubenv list');
  t.match(env, /boot_success=1/, 'trial marked good');
  t.notMatch(env, /boot_counter/, 'boot counter cleared');
  const state = await until('retained state shows v2', async () => {
    const doc = await world.retainedState();
    return doc !== null && JSON.stringify(doc).includes('"installedVersion":2') ? doc : undefined;
  }, 60_000, 2000).catch((err: unknown) => (t.fail(String(err)), null));
  t.ok(state, 'the host broker retained state shows release 2');
  await recordResult('update', { releaseSignMs: releaseMs, applyToTrialBootMs: toRebootMs, updateCycleMs: cycleMs, bootTimesMs: vm.bootTimesMs, deltaRequests: world.server.requests.filter((r) => r.path.includes('deltas')).length });
  t.comment(JSON.stringify(await updateStatus(vm)));
});
