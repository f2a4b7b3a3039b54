/**
 * Remote commands end to end: the real daemon (simulated bootloader, real OSTree sysroot), a real
 * mosquitto with mutual TLS, issuers published in the TUF repository by the real `outpostctl`.
 * The wire format is the documented one: a command signed here and sent with `mosquitto_pub` runs,
 * and its result is read with `mosquitto_sub`. The crash cases kill the daemon with SIGKILL at each
 * persisted step of a command and count the handler's runs in the steps file the daemon writes.
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { connectAsync, type MqttClient } from 'mqtt';
import { newCommand, signCommand, type NewCommand } from '../../../runtime/commands/index.js';
import { parseCommandResult, type CommandResult } from '../../../runtime/protocol/index.js';
import { otaDevice, type OtaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';
import type { PrivateKey } from '../../../runtime/trust/index.js';
import type { CertPair } from '../../../scripts/world/pki.js';
import { commandDeviceId, createCommandWorld, type CommandWorld } from '../../fixtures/command-world.js';

const deviceId = commandDeviceId;
let world: CommandWorld;
let operatorKey: PrivateKey;

t.before(async () => {
  world = await createCommandWorld();
  operatorKey = await world.addIssuer('operator', ['diagnostics', 'update-check']);
});
t.teardown(() => world?.close());

/** A device with commands on; its trust refreshed so it knows the issuers. */
async function commandDevice(t: Test, env: Record<string, string> = {}): Promise<{ device: OtaDevice; steps: string; output: () => string }> {
  const device = otaDevice(world.ota);
  t.teardown(device.cleanup);
  device.world.writeConfig({
    broker: world.brokerSection(),
    update: world.ota.updateConfig(),
    commands: { groups: ['site-a'] },
  });
  const steps = join(device.world.dir, 'command-steps');
  const { daemon } = await device.boot({ OUTPOST_FAULT_COMMAND_STEPS: steps, ...env });
  t.teardown(() => daemon.kill('SIGKILL'));
  let output = '';
  daemon.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const check = await device.cli(['update', 'check']);
  t.equal(check.exitCode, 0, 'the update check (which refreshes who may send commands) ran', { stderr: check.stderr });
  return { device, steps, output: () => output };
}

/** A subscriber on every device's result topic, as the fleet side. */
async function resultWatcher(t: Test): Promise<{ results: (CommandResult & { correlation?: string })[]; client: MqttClient }> {
  const client = await connectAsync(world.broker.url, { protocolVersion: 5, ca: readFileSync(world.pki.ca.cert), cert: readFileSync(world.fleetCert.cert), key: readFileSync(world.fleetCert.key), reconnectPeriod: 0, clientId: `watch-${Math.random().toString(16).slice(2)}` });
  t.teardown(() => client.endAsync(true));
  const results: (CommandResult & { correlation?: string })[] = [];
  client.on('message', (_topic, payload, packet) => {
    const correlation = packet.properties?.correlationData?.toString();
    results.push({ ...parseCommandResult(payload), ...(correlation ? { correlation } : {}) });
  });
  await client.subscribeAsync('outpost/v1/+/cmd/result', { qos: 1 });
  return { results, client };
}

const envelope = (overrides: Partial<NewCommand> = {}, key = operatorKey) =>
  JSON.stringify(signCommand(newCommand({ issuer: key.keyid, target: { device: deviceId }, type: 'diagnostics', validitySec: 600, ...overrides }), key));

const tlsArgs = (pair: CertPair) => ['-h', '127.0.0.1', '-p', String(world.broker.port), '--cafile', world.pki.ca.cert, '--cert', pair.cert, '--key', pair.key, '-V', 'mqttv5'];

t.test('the documented wire format: signed by a script, sent with mosquitto_pub, the result read with mosquitto_sub', async (t) => {
  await commandDevice(t);
  const sub = execa('mosquitto_sub', [...tlsArgs(world.fleetCert), '-t', `outpost/v1/${deviceId}/cmd/result/ops/1`, '-q', '1', '-C', '1', '-W', '30', '-F', '%J'], { reject: false });
  t.teardown(() => sub.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 500));
  const pub = await execa('mosquitto_pub', [...tlsArgs(world.fleetCert), '-t', `outpost/v1/${deviceId}/cmd`, '-q', '1', '-D', 'publish', 'response-topic', `outpost/v1/${deviceId}/cmd/result/ops/1`, '-D', 'publish', 'correlation-data', 'req-42', '-m', envelope({ id: 'wire-1' })], { reject: false });
  t.equal(pub.exitCode, 0, 'published', { stderr: pub.stderr });
  const got = await sub;
  t.equal(got.exitCode, 0, 'a result arrived', { stderr: got.stderr });
  const message = JSON.parse(got.stdout) as { payload: unknown; properties?: Record<string, unknown> };
  const result = parseCommandResult(JSON.stringify(message.payload));
  const correlation = message.properties?.['correlation-data'];
  t.match(result, { schema: 'outpost.command-result/1', id: 'wire-1', deviceId, type: 'diagnostics', outcome: 'succeeded' });
  t.match(result.output, { versions: { outpost: String }, link: { state: 'connected' }, outbox: { maxBytes: Number } });
  t.equal(correlation, 'req-42', 'the correlation data is echoed');
});

t.test('outpostctl command send --wait: signs, publishes, prints the result, exit code by outcome; a group command; refusals', async (t) => {
  await commandDevice(t);
  const tls = ['--broker', world.broker.url, '--ca', world.pki.ca.cert, '--cert', world.fleetCert.cert, '--cert-key', world.fleetCert.key];
  const ok = await world.ota.ctl(['command', 'send', ...tls, '--device', deviceId, '--type', 'diagnostics', '--key', join(world.ota.keysDir, 'operator.key'), '--wait', '--json']);
  t.match(JSON.parse(ok), { deviceId, outcome: 'succeeded', output: { uptimeSec: Number } });
  const { results } = await resultWatcher(t);
  await world.ota.ctl(['command', 'send', ...tls, '--group', 'site-a', '--type', 'diagnostics', '--key', join(world.ota.keysDir, 'operator.key')]);
  await world.ota.ctl(['command', 'send', ...tls, '--group', 'elsewhere', '--type', 'diagnostics', '--key', join(world.ota.keysDir, 'operator.key')]).catch(() => undefined);
  await until('the group result', async () => (results.length > 0 ? true : undefined), 20_000);
  t.match(results, [{ deviceId, outcome: 'succeeded', type: 'diagnostics' }], 'a group the device is in reaches it; another does not');
  // A type the issuer may not send: rejected, exit 65.
  const refused = await execa('node', [join('dist', 'runtime', 'cli', 'outpostctl.js'), 'command', 'send', ...tls, '--device', deviceId, '--type', 'reboot', '--key', join(world.ota.keysDir, 'operator.key'), '--wait'], { reject: false });
  t.equal(refused.exitCode, 65, 'exit code of a rejection');
  t.match(refused.stdout, /rejected \(type-not-allowed\)/);
});

t.test('outpostctl command send --group --wait: a result is the answer of the device whose topic it came on, not of the one it names', async (t) => {
  await commandDevice(t);
  // Another group member (here: any client of the fleet) answers at once on its own result topic,
  // claiming to be gw-test-1 and that the command failed.
  const spoofer = await connectAsync(world.broker.url, { protocolVersion: 5, ca: readFileSync(world.pki.ca.cert), cert: readFileSync(world.fleetCert.cert), key: readFileSync(world.fleetCert.key), reconnectPeriod: 0, clientId: 'gw-evil' });
  t.teardown(() => spoofer.endAsync(true));
  spoofer.on('message', (_topic, payload) => {
    const { signed } = JSON.parse(payload.toString()) as { signed: { id: string; type: string } };
    const lie = { schema: 'outpost.command-result/1', id: signed.id, deviceId, type: signed.type, outcome: 'failed', message: 'spoofed', finishedAt: new Date().toISOString() };
    void spoofer.publishAsync('outpost/v1/gw-evil/cmd/result', JSON.stringify(lie), { qos: 1 });
  });
  await spoofer.subscribeAsync('outpost/v1/group/site-a/cmd', { qos: 1 });
  const tls = ['--broker', world.broker.url, '--ca', world.pki.ca.cert, '--cert', world.fleetCert.cert, '--cert-key', world.fleetCert.key];
  const sent = await execa('node', [join('dist', 'runtime', 'cli', 'outpostctl.js'), 'command', 'send', ...tls, '--group', 'site-a', '--type', 'diagnostics', '--expires', '6s', '--key', join(world.ota.keysDir, 'operator.key'), '--wait', '--json'], { reject: false });
  t.equal(sent.exitCode, 0, 'the real answer decides', { stdout: sent.stdout, stderr: sent.stderr });
  t.match(sent.stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown), [{ deviceId, outcome: 'succeeded' }]);
});

t.test('rotation and revocation reach the device with its next metadata check, no reflash', async (t) => {
  const { device, output } = await commandDevice(t);
  const { results, client } = await resultWatcher(t);
  // The daemon's own first check (seconds after its start) would learn a key published before it.
  await until('the daemon\'s own first check', async () => (output().includes('"msg":"update check"') ? true : undefined), 30_000);
  const second = await world.addIssuer(`second-${Date.now()}`, ['diagnostics']);
  await client.publishAsync(`outpost/v1/${deviceId}/cmd`, envelope({ id: 'rot-before' }, second), { qos: 1 });
  // Refused before the signature verified: the id is only claimed.
  await until('refused', async () => results.find((r) => r.claimedId === 'rot-before'), 20_000);
  t.match(results.find((r) => r.claimedId === 'rot-before'), { id: 'unknown', outcome: 'rejected', reason: 'unknown-issuer' }, 'not yet known to the device');
  t.equal((await device.cli(['update', 'check'])).exitCode, 0);
  await client.publishAsync(`outpost/v1/${deviceId}/cmd`, envelope({ id: 'rot-after' }, second), { qos: 1 });
  await until('run', async () => results.find((r) => r.id === 'rot-after'), 20_000);
  t.match(results.find((r) => r.id === 'rot-after'), { outcome: 'succeeded' }, 'the new key works after the check');
  await world.ota.ctl(['commands', 'issuers', 'revoke', '--repo', world.ota.tufDir, '--keyid', second.keyid, ...world.signingKeys]);
  t.equal((await device.cli(['update', 'check'])).exitCode, 0);
  await client.publishAsync(`outpost/v1/${deviceId}/cmd`, envelope({ id: 'rot-revoked' }, second), { qos: 1 });
  await until('revoked', async () => results.find((r) => r.claimedId === 'rot-revoked'), 20_000);
  t.match(results.find((r) => r.claimedId === 'rot-revoked'), { id: 'unknown', outcome: 'rejected', reason: 'revoked-issuer' });
});

/** Each step a crash can fall between, what must come of it, and how often the handler may have run. */
const crashes = [
  { step: 'stored', outcome: 'succeeded', ran: 1, why: 'stored but not acknowledged: run once after the restart (the broker redelivers too)' },
  { step: 'started', outcome: 'interrupted', ran: 0, why: 'recorded as started, handler not yet run: never run' },
  { step: 'ran', outcome: 'interrupted', ran: 1, why: 'ran, result not recorded: reported interrupted, not run again' },
  { step: 'finished', outcome: 'succeeded', ran: 1, why: 'result recorded, not yet sent: sent after the restart' },
] as const;

for (const crash of crashes) {
  t.test(`kill -9 at "${crash.step}": ${crash.why}`, async (t) => {
    const device = otaDevice(world.ota);
    t.teardown(device.cleanup);
    device.world.writeConfig({
      broker: world.brokerSection(),
      update: world.ota.updateConfig(),
      commands: {},
    });
    const steps = join(device.world.dir, 'command-steps');
    const first = await device.boot({ OUTPOST_FAULT_COMMAND_STEPS: steps, OUTPOST_FAULT_KILL_AT_COMMAND: crash.step });
    t.teardown(() => first.daemon.kill('SIGKILL'));
    t.equal((await device.cli(['update', 'check'])).exitCode, 0);
    const { results, client } = await resultWatcher(t);
    const id = `crash-${crash.step}`;
    await client.publishAsync(`outpost/v1/${deviceId}/cmd`, envelope({ id }), { qos: 1 });
    await until('the daemon killed at its step', async () => (first.daemon.signalCode !== null || first.daemon.exitCode !== null ? true : undefined), 20_000);
    t.equal(first.daemon.signalCode, 'SIGKILL', 'killed at the step');
    const second = await device.boot({ OUTPOST_FAULT_COMMAND_STEPS: steps });
    t.teardown(() => second.daemon.kill('SIGKILL'));
    await until('a result', async () => results.find((r) => r.id === id), 20_000);
    // Give a redelivery, a second run or a second result time to show up.
    await new Promise((r) => setTimeout(r, 1500));
    const mine = results.filter((r) => r.id === id);
    t.equal(mine[0]?.outcome, crash.outcome, `the result is ${crash.outcome}`);
    t.ok(mine.every((r) => JSON.stringify(r) === JSON.stringify(mine[0])), 'any repeat is the same result, re-sent', { results: mine });
    const ran = readFileSync(steps, 'utf8').split('\n').filter((line) => line === `started ${id}`).length;
    const finishedRuns = readFileSync(steps, 'utf8').split('\n').filter((line) => line === `ran ${id}`).length;
    t.ok(ran <= 1, 'started at most once');
    t.equal(crash.step === 'started' ? finishedRuns : ran, crash.ran, 'the handler ran as often as it may');
  });
}
