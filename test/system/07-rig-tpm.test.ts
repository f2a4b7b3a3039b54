/**
 * Rig check 7, TPM (not a product scenario: no outpost code runs here yet): /dev/tpmrm0 (swtpm,
 * tpm-tis) works in the guest, and an NV index written once survives a guest reboot and a full
 * qemu + swtpm restart on the same state directory: the ground the trust work (anti-rollback
 * counters, identity) will stand on, checked before that work tests outpost on it.
 */
import t from 'tap';
import { nextBoot, recordResult, scenario } from './lib/scenario.js';

const nv = '0x1500016';
const read = `TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_nvread ${nv} -C o -s 8`;

t.test('rig check: the swtpm TPM\'s NV index survives reboot and qemu+swtpm restart', async (t) => {
  const { vm } = await scenario(t, '07-tpm');
  await vm.start();
  t.match(await vm.sh('ls /dev/tpmrm0'), /tpmrm0/, '/dev/tpmrm0 exists');
  const t0 = performance.now();
  await vm.sh(`export TPM2TOOLS_TCTI=device:/dev/tpmrm0
tpm2_getrandom 8 --hex >/dev/null
tpm2_nvdefine ${nv} -C o -s 8 -a "ownerread|ownerwrite"
printf outpost1 > /run/nv && tpm2_nvwrite ${nv} -C o -i /run/nv`);
  const writeMs = Math.round(performance.now() - t0);
  t.equal(await vm.sh(read), 'outpost1', 'NV index written and read back');
  const since = await vm.mark();
  vm.fire('systemctl reboot');
  await nextBoot(vm, since);
  t.equal(await vm.sh(read), 'outpost1', 'NV index survives a guest reboot');
  await vm.stop();
  await vm.start();
  t.equal(await vm.sh(read), 'outpost1', 'NV index survives a qemu + swtpm restart');
  await recordResult('tpm', { defineWriteMs: writeMs, bootTimesMs: vm.bootTimesMs });
});
