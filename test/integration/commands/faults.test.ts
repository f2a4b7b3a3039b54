/**
 * Commands under link faults, on the real daemon: the broker restarted while a command runs, and
 * an uplink (a TCP proxy in between) that delays, stalls and cuts. Each command runs once (the
 * daemon's steps file counts its starts) and every one is answered; a repeat of a result is the
 * same result, re-sent.
 */
import t, { type Test } from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectAsync, type MqttClient } from 'mqtt';
import { newCommand, signCommand } from '../../../runtime/commands/index.js';
import { parseCommandResult, type CommandResult } from '../../../runtime/protocol/index.js';
import type { PrivateKey } from '../../../runtime/trust/index.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';
import { commandDeviceId, createCommandWorld, type CommandWorld } from '../../fixtures/command-world.js';
import { startTcpProxy } from '../../fixtures/tcp-proxy.js';

const deviceId = commandDeviceId;
let world: CommandWorld;
let operatorKey: PrivateKey;

t.before(async () => {
  // Persistence: sessions and queued messages survive the restart, as on a production world.broker.
  world = await createCommandWorld({ persistence: true });
  operatorKey = await world.addIssuer('operator', ['diagnostics', 'update-check']);
});
t.teardown(() => world?.close());

/** The fleet side: a persistent session, so results published while it is away wait for it. */
async function fleet(t: Test): Promise<{ client: MqttClient; results: CommandResult[] }> {
  const client = await connectAsync(world.broker.url, {
    protocolVersion: 5, clean: false, clientId: `fleet-${Math.random().toString(16).slice(2)}`, properties: { sessionExpiryInterval: 3600 },
    ca: readFileSync(world.pki.ca.cert), cert: readFileSync(world.fleetCert.cert), key: readFileSync(world.fleetCert.key), reconnectPeriod: 200,
  });
  t.teardown(() => client.endAsync(true));
  const results: CommandResult[] = [];
  client.on('message', (_topic, payload) => results.push(parseCommandResult(payload)));
  await client.subscribeAsync(`outpost/v1/${deviceId}/cmd/result`, { qos: 1 });
  return { client, results };
}

async function startDevice(t: Test, brokerUrl: string) {
  const device = otaDevice(world.ota);
  t.teardown(device.cleanup);
  device.world.writeConfig({
    broker: world.brokerSection(brokerUrl),
    update: world.ota.updateConfig(),
    commands: {},
  });
  const steps = join(device.world.dir, 'command-steps');
  const { daemon } = await device.boot({ OUTPOST_FAULT_COMMAND_STEPS: steps });
  t.teardown(() => daemon.kill('SIGKILL'));
  t.equal((await device.cli(['update', 'check'])).exitCode, 0, 'issuers trusted');
  const stepsText = () => (existsSync(steps) ? readFileSync(steps, 'utf8') : '');
  const starts = (id: string) => stepsText().split('\n').filter((line) => line === `started ${id}`).length;
  return { device, starts, stepsText };
}

const envelope = (id: string, type = 'diagnostics') => JSON.stringify(signCommand(newCommand({ id, issuer: operatorKey.keyid, target: { device: deviceId }, type, validitySec: 600 }), operatorKey));

t.test('the broker restarted while a command runs: it ran once, and its one result arrives after the restart', async (t) => {
  const { results, client } = await fleet(t);
  const { starts, stepsText } = await startDevice(t, world.broker.url);
  // The command's metadata fetch stalls 4 s: the broker goes down and comes back meanwhile.
  world.ota.ostree.server.setFault({ pathPrefix: '/tuf/timestamp', delayMs: 4_000, times: 1 });
  t.teardown(() => world.ota.ostree.server.setFault(null));
  await client.publishAsync(`outpost/v1/${deviceId}/cmd`, envelope('mid-restart', 'update-check'), { qos: 1 });
  await until('the command started', async () => (stepsText().includes('started mid-restart') ? true : undefined), 10_000);
  await world.broker.restart({ downMs: 1_000 });
  await until('its result', async () => results.find((r) => r.id === 'mid-restart'), 30_000);
  await sleep(1_500);
  const mine = results.filter((r) => r.id === 'mid-restart');
  t.equal(mine[0]?.outcome, 'succeeded', 'succeeded', { result: mine[0] });
  t.ok(mine.every((r) => JSON.stringify(r) === JSON.stringify(mine[0])), 'a repeat is the same result');
  t.equal(starts('mid-restart'), 1, 'ran once');
});

t.test('through an uplink that delays, stalls and cuts: every command answered, each run once, answers in command order', async (t) => {
  const [host, port] = ['127.0.0.1', world.broker.port];
  const proxy = await startTcpProxy({ host, port });
  t.teardown(() => proxy.close());
  proxy.setDelayMs(100);
  const { results, client } = await fleet(t);
  const { starts } = await startDevice(t, `mqtts://127.0.0.1:${proxy.port}`);
  const ids = Array.from({ length: 12 }, (_, i) => `flaky-${String(i).padStart(2, '0')}`);
  for (const id of ids) await client.publishAsync(`outpost/v1/${deviceId}/cmd`, envelope(id), { qos: 1 });
  // Cut while commands and results are in flight, stall (bytes held, nothing forwarded), go down.
  await until('some answers', async () => (results.length >= 3 ? true : undefined), 20_000);
  proxy.cut();
  await sleep(300);
  proxy.setStalled(true);
  await sleep(1_500);
  proxy.setStalled(false);
  proxy.setDown(true);
  await sleep(1_500);
  proxy.setDown(false);
  await until('every command answered', async () => (ids.every((id) => results.some((r) => r.id === id)) ? true : undefined), 60_000);
  await sleep(1_500);
  const firstSeen = [...new Set(results.map((r) => r.id))];
  t.same(firstSeen, ids, 'answers arrive in command order');
  for (const id of ids) {
    const mine = results.filter((r) => r.id === id);
    if (!mine.every((r) => JSON.stringify(r) === JSON.stringify(mine[0]))) t.fail(`${id}: two different results`, { mine });
    if (starts(id) !== 1) t.fail(`${id} ran ${starts(id)} times`);
  }
  t.ok(results.every((r) => r.outcome === 'succeeded'), 'all succeeded');
  t.ok(proxy.connections >= 2, 'the device reconnected through the proxy', { connections: proxy.connections });
});
