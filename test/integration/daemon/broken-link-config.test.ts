/**
 * Issue 16 item 5: a broken link config degrades the link, never stops the updater. A release
 * may ship (or a provisioning step may leave) a config whose broker CA file is missing; if that
 * stopped the daemon (exit 78, RestartPreventExitStatus), nothing would bless or roll back the
 * release on trial. Real daemon, real OSTree sysroot with the simulated bootloader, real broker.
 */
import t from 'tap';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { createPki } from '../../../scripts/world/pki.js';
import { startMosquitto } from '../../../scripts/world/mosquitto.js';
import { until } from '../../../scripts/world/until.js';
import { startNotifyReceiver } from '../../fixtures/notify-receiver.js';

let ota: OtaWorld;
t.before(async () => {
  ota = await createOtaWorld({ versions: [1] });
});
t.teardown(() => ota.close());

interface LinkPart {
  state: string;
  lastError?: string;
}

t.test('broker.caFile missing: READY, status names the problem, an update is still installed and blessed; the link comes up once the file is there', async (t) => {
  const device = otaDevice(ota);
  t.teardown(device.cleanup);
  const pki = await createPki({ dir: join(device.world.dir, 'pki'), deviceId: 'gw-test-1' });
  mkdirSync(join(device.world.dir, 'broker'));
  const broker = await startMosquitto({ dir: join(device.world.dir, 'broker'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  t.teardown(() => broker.stop());
  const caFile = join(device.world.dir, 'tls', 'ca.crt');
  device.world.writeConfig({
    broker: { url: broker.url, caFile, certFile: pki.client.cert, keyFile: pki.client.key, reconnectMinMs: 200, reconnectMaxMs: 1000 },
    // Checks every second on its own: release 2 is published once the status checks are done, so
    // the daemon's own schedule installs it (no race with an explicit apply).
    update: ota.updateConfig({ checkIntervalSec: 1 }),
  });
  const linkStatus = async (): Promise<LinkPart> => {
    const r = await device.cli(['status', '--json']);
    if (r.exitCode !== 0) throw new Error(`status failed: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { link: LinkPart }).link;
  };

  const receiver = await startNotifyReceiver(join(device.world.dir, 'notify.sock'));
  t.teardown(() => receiver.close());
  const { daemon } = await device.boot({ NOTIFY_SOCKET: receiver.address });
  t.teardown(() => daemon.kill('SIGKILL'));
  const ready = await until('READY=1 or exit', async () => {
    if (daemon.exitCode !== null) return `exited ${daemon.exitCode}`;
    const pending = receiver.pending();
    return pending.some((d) => d.data.includes('READY=1')) ? 'ready' : undefined;
  }, 15_000);
  t.equal(ready, 'ready', 'the daemon tells systemd it is up');

  const link = await linkStatus();
  t.equal(link.state, 'offline', 'the link is down');
  t.match(link.lastError, `broker.caFile (${caFile}) does not exist`, 'with the reason');
  const human = await device.cli(['status']);
  t.match(human.stdout, /link:\s+offline since .*broker\.caFile .* does not exist/, '`outpost status` shows it');
  t.equal((await device.status()).state, 'idle', 'the update service is up');

  // The point of it all: the release is installed, put on probation and blessed with the link down.
  await ota.release(2, { deltaFrom: [1] });
  t.equal((await daemon).exitCode, 0, 'installed on schedule; the simulated reboot stops the daemon cleanly');
  const final = await device.converge();
  t.match(final.last, { result: 'committed', version: 2 });
  t.equal(final.installedVersion, 2);

  const again = await device.boot();
  t.teardown(() => again.daemon.kill('SIGKILL'));
  t.equal((await linkStatus()).state, 'offline');
  mkdirSync(join(device.world.dir, 'tls'));
  copyFileSync(pki.ca.cert, caFile);
  await until('the link to connect without a restart', async () => ((await linkStatus()).state === 'connected' ? true : undefined), 15_000);
  again.daemon.kill('SIGTERM');
  const result = await again.daemon;
  t.equal(result.exitCode, 0);
  const lines = (result.all ?? '').split('\n');
  t.ok(lines.some((l) => l.includes('"level":"error"') && /broker\.caFile .* does not exist/.test(l)), 'logged as an error');
});
