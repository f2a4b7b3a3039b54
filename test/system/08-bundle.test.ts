/**
 * Scenario 8, offline bundle: `outpostctl release bundle` on an ext4 "USB stick" (a second,
 * read-only virtio disk); the guest has no forwards at all (restrict=on, nothing reachable) and
 * installs release 2 from the stick: verified like a network update, deployed, trial, commit.
 */
import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { bootedRelease, nextBoot, outpostReady, recordResult, scenario, settled } from './lib/scenario.js';

t.test('offline bundle from a second disk installs v2 with no network', async (t) => {
  const s = await scenario(t, '08-bundle');
  await s.world.release(2, [1]);
  const stick = join(s.dir, 'stick');
  await mkdir(stick);
  await s.world.bundle(2, join(stick, 'outpost-v2.bundle'));
  const img = join(s.dir, 'stick.img');
  await execa('mkfs.ext4', ['-q', '-L', 'USBSTICK', '-d', stick, img, '64M']);
  // A second VM on the same overlay dir, without any forwards: the guest reaches nothing.
  const { Vm } = await import('./lib/vm.js');
  await s.vm.stop();
  const vm = new Vm({ dir: s.dir, base: s.image.disk, extraDisk: img });
  t.teardown(() => vm.stop());
  await vm.start();
  t.equal(await bootedRelease(vm), 1);
  const net = await vm.exec('timeout 5 bash -c "exec 3<>/dev/tcp/10.0.2.100/8080" 2>&1');
  t.not(net.rc, 0, 'the update server is not reachable (no forwards)');
  await outpostReady(vm);
  await vm.sh('mkdir -p /run/media/usb && mount -o ro /dev/vdb /run/media/usb');
  const since = await vm.mark();
  const t0 = performance.now();
  await vm.sh('outpost update install /run/media/usb/outpost-v2.bundle', 600_000);
  await nextBoot(vm, since, 600_000);
  const st = await settled(vm);
  t.equal(await bootedRelease(vm), 2, 'release 2 booted from the bundle');
  t.match(st.last, { result: 'committed', version: 2 });
  await recordResult('bundle', { installCycleMs: Math.round(performance.now() - t0), bootTimesMs: vm.bootTimesMs });
});
