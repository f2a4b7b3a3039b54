/**
 * `set-config`, `logs` and `restart-service` on the real daemon (simulated bootloader, real OSTree
 * sysroot), a real mosquitto with mutual TLS and issuers published by the real `outpostctl`, as in
 * daemon-commands.test.ts. A good patch lands in the overlay with the previous one kept and the
 * daemon exits 75 for systemd to restart it; the next start runs with it. There is no systemd in
 * the test container: `restart-service` is shown refusing units off the list and reaching
 * systemctl (which then fails here) for one on it; restarting a unit for real is the booted
 * gateway's test.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { newCommand, signCommand, type NewCommand } from '../../../runtime/commands/index.js';
import { parseCommandResult, type CommandResult } from '../../../runtime/protocol/index.js';
import type { PrivateKey } from '../../../runtime/trust/index.js';
import type { OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice, type OtaDevice } from '../../../scripts/world/ota-device.js';
import type { CertPair, Pki } from '../../../scripts/world/pki.js';
import type { Mosquitto } from '../../../scripts/world/mosquitto.js';
import { commandDeviceId, createCommandWorld, type CommandWorld } from '../../fixtures/command-world.js';
import { until } from '../../../scripts/world/until.js';

const deviceId = commandDeviceId;
let ota: OtaWorld;
let pki: Pki;
let broker: Mosquitto;
let operatorCert: CertPair;
let operatorKey: PrivateKey;

let world: CommandWorld;

t.before(async () => {
  world = await createCommandWorld();
  ({ ota, pki, broker, fleetCert: operatorCert } = world);
  operatorKey = await world.addIssuer('operator', ['set-config', 'logs', 'restart-service']);
});
t.teardown(() => world?.close());

const journalDir = () => join(ota.ostree.dir, 'empty-journal');

/** Wrapped: the daemon's process is itself a thenable. */
type Daemon = { daemon: ReturnType<OtaDevice['world']['run']> };

async function commandDevice(t: Test): Promise<{ device: OtaDevice; boot: () => Promise<Daemon> }> {
  const device = otaDevice(ota);
  t.teardown(device.cleanup);
  mkdirSync(journalDir(), { recursive: true });
  device.world.writeConfig({
    broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key, reconnectMinMs: 200, reconnectMaxMs: 1000 },
    update: ota.updateConfig(),
    commands: { restartUnits: ['outpost-test-nothing.service'], logs: { journalDir: journalDir() } },
  });
  const boot = async () => {
    const { daemon } = await device.boot();
    t.teardown(() => daemon.kill('SIGKILL'));
    return { daemon };
  };
  return { device, boot };
}

async function sender(t: Test) {
  const client = await connectAsync(broker.url, { protocolVersion: 5, ca: readFileSync(pki.ca.cert), cert: readFileSync(operatorCert.cert), key: readFileSync(operatorCert.key), reconnectPeriod: 0, clientId: `op-${Math.random().toString(16).slice(2)}` });
  t.teardown(() => client.endAsync(true));
  const results: CommandResult[] = [];
  client.on('message', (_topic, payload) => results.push(parseCommandResult(payload)));
  await client.subscribeAsync('outpost/v1/+/cmd/result', { qos: 1 });
  return async (fields: Partial<NewCommand> & { id: string }): Promise<CommandResult> => {
    const envelope = signCommand(newCommand({ issuer: operatorKey.keyid, target: { device: deviceId }, type: 'logs', validitySec: 600, ...fields }), operatorKey);
    await client.publishAsync(`outpost/v1/${deviceId}/cmd`, JSON.stringify(envelope), { qos: 1 });
    return until(`the result of ${fields.id}`, async () => results.find((r) => r.id === fields.id), 30_000);
  };
}

t.test('set-config: a good patch lands in the overlay (previous kept) and the daemon restarts into it; bad and protected patches are refused naming the field', async (t) => {
  const { device, boot } = await commandDevice(t);
  const { daemon: first } = await boot();
  t.equal((await device.cli(['update', 'check'])).exitCode, 0, 'issuers refreshed');
  const send = await sender(t);
  const overlay = join(device.world.stateDir, 'config.json');

  const good = await send({ id: 'set-1', type: 'set-config', args: { patch: { update: { checkIntervalSec: 1234 } } } });
  t.match(good, { outcome: 'succeeded', output: { changed: true, restart: true } });
  t.same(JSON.parse(readFileSync(overlay, 'utf8')), { update: { checkIntervalSec: 1234 } });
  t.same(JSON.parse(readFileSync(`${overlay}.previous`, 'utf8')), {}, 'the previous (empty) overlay kept');
  await until('the daemon stopped to restart', async () => (first.exitCode !== null || first.signalCode !== null ? true : undefined), 20_000);
  t.equal(first.exitCode, 75, 'exit 75: systemd\'s Restart=on-failure starts it again');

  await boot();
  const bad = await send({ id: 'set-2', type: 'set-config', args: { patch: { update: { checkIntervalSec: 0 }, log: { level: 'loud' } } } });
  t.equal(bad.outcome, 'failed');
  t.match(bad.message, /update\.checkIntervalSec: Too small/);
  t.match(bad.message, /log\.level: /);
  const guarded = await send({ id: 'set-3', type: 'set-config', args: { patch: { update: { rootFile: '/tmp/root.json' } } } });
  t.match(guarded, { outcome: 'rejected', reason: 'bad-args', message: /patch\.update\.rootFile: may not be changed by a remote command/ });
  t.same(JSON.parse(readFileSync(overlay, 'utf8')), { update: { checkIntervalSec: 1234 } }, 'refused patches wrote nothing');
  t.same(JSON.parse(readFileSync(`${overlay}.previous`, 'utf8')), {});
  t.ok(existsSync(device.world.socketPath), 'still running');
});

t.test('logs and restart-service on the real daemon', async (t) => {
  const { device, boot } = await commandDevice(t);
  await boot();
  t.equal((await device.cli(['update', 'check'])).exitCode, 0);
  const send = await sender(t);
  const logs = await send({ id: 'logs-1', type: 'logs', args: { lines: 10, since: '1h' } });
  t.match(logs, { outcome: 'succeeded', output: { encoding: 'gzip+base64', unit: 'outpost.service', lines: 0, truncated: false } }, 'journalctl ran on the configured (empty) journal directory');
  const off = await send({ id: 'rs-1', type: 'restart-service', args: { unit: 'sshd.service' } });
  t.match(off, { outcome: 'rejected', reason: 'bad-args', message: /unit: not in commands\.restartUnits \(outpost-test-nothing\.service\)/ });
  const listed = await send({ id: 'rs-2', type: 'restart-service', args: { unit: 'outpost-test-nothing.service' } });
  t.match(listed, { outcome: 'failed', message: /systemctl restart -- outpost-test-nothing\.service/ }, 'systemctl was run (no systemd here, so it fails)');
});
