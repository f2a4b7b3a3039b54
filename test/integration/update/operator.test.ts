/**
 * What an operator does by hand, on a real ostree sysroot: `outpost update cancel` before the
 * deploy (the download stops, nothing changes, automatic checks pass the release over until an
 * explicit apply) and `outpost update rollback` to the deployment kept for it.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { createOtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';

/** Waits for the daemon to stop for its (simulated) reboot; an update that never gets there fails here, not at tap's timeout. */
async function rebooted(daemon: { exitCode: number | null; signalCode: string | null } & PromiseLike<unknown>): Promise<void> {
  await until('the (simulated) reboot', async () => (daemon.exitCode !== null || daemon.signalCode !== null ? true : undefined), 120_000);
  await daemon;
}

t.test('cancel stops the download and changes nothing; rollback goes back to the release before', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  // Incompressible, so the delta takes minutes at the capped rate: the cancel meets the download.
  await ota.release(2, { deltaFrom: [1], extra: { 'usr/share/outpost-world/payload.bin': randomBytes(256 * 1024) } });
  const probation = { probation: { windowSec: 3, intervalSec: 1 } };
  const device = otaDevice(ota, { ...probation, bandwidthBytesPerSec: 1024, minDownloadBytesPerSec: 0 });
  t.teardown(device.cleanup);
  const before = await device.adminStatus();

  let { daemon } = await device.boot();
  // The daemon's own first check starts the update.
  await until('the download under way', async () => ((await device.status()).progress?.bytes ?? 0) > 0 || undefined, 30_000);
  const cancel = await device.cli(['update', 'cancel']);
  t.equal(cancel.exitCode, 0, cancel.stderr);
  t.match(cancel.stdout, /cancelled the update to release 2/);
  const cancelled = await device.status();
  t.match(cancelled, { state: 'idle', release: null, last: { result: 'failed', code: 'UPDATE_CANCELLED', version: 2, reason: /cancelled by an operator/ } });
  t.same(await readdir(join(device.world.stateDir, 'downloads')), [], 'the partial download is gone');
  // (Asked only now: the daemon's first check starts the update a few seconds after its start.)
  t.match((await device.cli(['update', 'cancel'])).stdout, /nothing to cancel: no update is under way/, 'nothing under way: said, nothing changed');
  t.equal(await device.adminStatus(), before, 'the deployments are as they were');
  const rollbackNothing = await device.cli(['update', 'rollback']);
  t.equal(rollbackNothing.exitCode, 70, 'no deployment to roll back to on the factory image');
  t.match(rollbackNothing.stderr, /UPDATE_ROLLBACK_IMPOSSIBLE|roll back/);
  daemon.kill('SIGTERM');
  await daemon;

  // The next start's automatic check passes the cancelled release over and says why.
  device.world.writeConfig({ update: ota.updateConfig(probation) });
  ({ daemon } = await device.boot());
  const passedOver = await until('the automatic check', async () => (await device.status()).lastCheck ?? undefined, 30_000);
  t.match(passedOver.result, /release 2 was cancelled by an operator \(outpost update apply installs it\)/);
  t.equal((await device.status()).state, 'idle', 'and does not install it');
  // An explicit apply does.
  t.equal((await device.cli(['update', 'apply'])).exitCode, 0);
  await rebooted(daemon);
  const committed = await device.converge();
  t.match(committed.last, { result: 'committed', version: 2 });

  ({ daemon } = await device.boot());
  const rollback = await device.cli(['update', 'rollback', '--json']);
  t.equal(rollback.exitCode, 0, rollback.stderr);
  t.match(JSON.parse(rollback.stdout), { from: { version: 2, commit: ota.ostree.commit(2) }, to: { commit: ota.ostree.commit(1) } });
  await rebooted(daemon);
  const back = await device.converge();
  t.match(back, { bootedCommit: ota.ostree.commit(1), last: { result: 'rolledBack', version: 2, reason: /rolled back on request/ } });
  t.notMatch(await device.adminStatus(), new RegExp(ota.ostree.commit(2)), 'the release left is undeployed');
  ({ daemon } = await device.boot());
  t.match((await device.cli(['update', 'check'])).stdout, /release 2 (failed its trial on this device and is not retried|is not newer)/, 'and not offered again');
  daemon.kill('SIGTERM');
  await daemon;
});
