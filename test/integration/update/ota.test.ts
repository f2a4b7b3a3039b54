import t from 'tap';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { createPki } from '../../../scripts/world/pki.js';
import { startMosquitto } from '../../../scripts/world/mosquitto.js';
import { connectObserver } from '../../../scripts/world/observer.js';
import { startNotifyReceiver } from '../../fixtures/notify-receiver.js';

const failingCheck = { 'usr/libexec/outpost/health-check': '#!/bin/sh\necho "app did not start" >&2\nexit 1\n' };
const passingCheck = { 'usr/libexec/outpost/health-check': '#!/bin/sh\nexit 0\n' };
const healthCheck = { checks: [{ name: 'app', command: ['/bin/sh', '-c', 'exec "$OUTPOST_DEPLOYMENT_ROOT/usr/libexec/outpost/health-check"'] }] };

let ota: OtaWorld;
t.before(async () => {
  ota = await createOtaWorld({ versions: [1] });
});
t.teardown(() => ota.close());

t.test('v1 → v2 as a static delta: download, deploy, reboot, probation, commit', async (t) => {
  await ota.release(2, { deltaFrom: [1], extra: passingCheck });
  const device = otaDevice(ota, { probation: { windowSec: 10, intervalSec: 1, ...healthCheck } });
  t.teardown(device.cleanup);
  // A real broker too: the outcome must reach the retained state topic.
  const pki = await createPki({ dir: join(device.world.dir, 'pki'), deviceId: 'gw-test-1' });
  mkdirSync(join(device.world.dir, 'broker'));
  const broker = await startMosquitto({ dir: join(device.world.dir, 'broker'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  t.teardown(() => broker.stop());
  device.world.writeConfig({
    broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key, reconnectMinMs: 200, reconnectMaxMs: 2000 },
    update: ota.updateConfig({ probation: { windowSec: 10, intervalSec: 1, ...healthCheck } }),
  });
  // systemctl status shows the update as it goes (STATUS=), across the reboot.
  const notify = await startNotifyReceiver(join(device.world.dir, 'notify.sock'));
  t.teardown(() => notify.close());
  const underSystemd = { NOTIFY_SOCKET: notify.address };
  // v1 has no health-check script: the device runs v1 until the update.
  const { daemon } = await device.boot(underSystemd);
  const before = ota.ostree.server.requests.length;
  const apply = await device.cli(['update', 'apply']);
  t.equal(apply.exitCode, 0, apply.stderr);
  t.match(apply.stdout, /installing release 2 \(static delta\)/);
  const first = await daemon;
  t.equal(first.exitCode, 0, 'the simulated reboot stops the daemon cleanly');
  t.match(await device.adminStatus(), new RegExp(`${ota.ostree.commit(2)}\\.0`), 'v2 deployed');

  const status = await device.converge(6, underSystemd);
  t.match(status.last, { result: 'committed', version: 2, commit: ota.ostree.commit(2) });
  const shown = notify.pending().flatMap((d) => d.data.split('\n')).filter((l) => l.startsWith('STATUS=')).map((l) => l.slice(7));
  for (const re of [/^applying release 2$/, /^rebooting into release 2$/, /^probation of release 2: \d+ s left$/, /^release 2 running$/]) {
    t.ok(shown.some((text) => re.test(text)), `STATUS= showed ${re}`, { shown });
  }
  t.equal(status.installedVersion, 2);
  t.equal(status.bootedCommit, ota.ostree.commit(2));
  const admin = await device.adminStatus();
  t.ok(admin.indexOf(ota.ostree.commit(2)) < admin.indexOf(ota.ostree.commit(1)), 'v2 is the default, v1 kept as rollback');
  const observer = await connectObserver({ url: broker.url, caFile: pki.ca.cert, identity: pki.observer, topics: ['outpost/v1/gw-test-1/state'] });
  t.teardown(() => observer.close());
  const retained = await observer.waitFor('outpost/v1/gw-test-1/state', (m) => m.retain, 10_000);
  t.match(JSON.parse(retained.payload), { bootedCommit: ota.ostree.commit(2), update: { state: 'idle', installedVersion: 2, last: { result: 'committed', version: 2 } } }, 'the broker holds the committed state');
  const served = ota.ostree.server.requests.slice(before).map((r) => r.path);
  t.ok(served.some((p) => p.includes('/tuf/targets/deltas/')), 'the delta was downloaded');
  t.notOk(served.some((p) => p.includes('/repo/objects/')), 'no object pull was needed');

  t.test('a bad v3 whose health check fails is rolled back on its own, with the reason', async (t) => {
    await ota.release(3, { deltaFrom: [2], extra: failingCheck });
    const { daemon: d } = await device.boot();
    // --wait follows the update through the reboot into its trial (a simulated reboot stops only
    // the daemon) and the rollback's reboot to the verdict: exit 1 with the reason.
    const following = device.cli(['update', 'apply', '--wait', '--json']);
    await d;
    let verdict: Awaited<typeof following> | undefined;
    for (let boots = 0; verdict === undefined && boots < 4; boots++) {
      const { daemon } = await device.boot();
      verdict = await Promise.race([following, daemon.then(() => undefined)]);
      if (verdict) {
        daemon.kill('SIGTERM');
        await daemon;
      }
    }
    t.equal(verdict?.exitCode, 1, verdict?.stderr ?? 'no verdict within 4 boots');
    t.match(verdict?.stderr, /(?:downloading|applying) release 3[^]*outpost is not answering \(.*\); waiting[^]*probation of release 3/, 'each new state it saw on stderr (not a terminal; a fast download may fall between two polls), the wait across the reboot, the probation');
    t.match(JSON.parse(verdict?.stdout ?? '{}'), { exitCode: 1, outcome: /^release 3 (failed its trial|rolled back): .*health checks failed during probation: app/ });
    const final = await device.converge();
    t.match(final.last, { result: 'rolledBack', version: 3, reason: /health checks failed during probation: app/ });
    t.equal(final.bootedCommit, ota.ostree.commit(2), 'back on v2');
    t.equal(final.installedVersion, 2);
    const { daemon: again } = await device.boot();
    const check = await device.cli(['update', 'check']);
    t.match(check.stdout, /release 3 failed its trial on this device and is not retried; release 2 is already running/, 'v3 is never retried');
    // `outpost status` lists the deployments as `ostree admin status` does: v2 booted, v3 gone (v1 went when v3 was deployed).
    const shown = await device.cli(['status']);
    t.match(shown.stdout, new RegExp(`\\ndeployments:\\n\\* \\S+ ${ota.ostree.commit(2)}\\.\\d+ \\(version 2\\)$`), shown.stdout);
    again.kill('SIGTERM');
    await again;
  });
});
