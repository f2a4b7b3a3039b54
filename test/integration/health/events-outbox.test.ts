/**
 * Health events need only a broker, not the commands section: the real daemon with a broker and
 * a check but no `commands` (and no `update`) sends `health-check-changed` through its outbox to
 * a real mosquitto with mutual TLS, and an event from a time the broker was down arrives once it
 * is back. Without a broker the events are logged, and the outbox's code is not even loaded.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectAsync } from 'mqtt';
import { deviceWorld } from '../../../scripts/world/device.js';
import { startMosquitto } from '../../../scripts/world/mosquitto.js';
import { createPki, issueClientCert } from '../../../scripts/world/pki.js';
import { until } from '../../../scripts/world/until.js';

interface Report {
  checks: { name: string; status: string }[];
}

t.test('without a commands section, check transitions reach the fleet on the events topic, also from while the broker was down', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-health-events-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pki = await createPki({ dir, deviceId: 'gw-test-1' });
  // Persistent, so the fleet's session and what is queued for it outlive the broker's restart.
  const broker = await startMosquitto({ dir, caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key, persistence: true });
  t.teardown(() => broker.stop());
  const fleet = await issueClientCert(pki, 'fleet');
  const watcher = await connectAsync(broker.url, {
    protocolVersion: 5,
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(fleet.cert),
    key: readFileSync(fleet.key),
    clientId: 'fleet-health-watcher',
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 200,
  });
  t.teardown(() => watcher.endAsync(true));
  const events: Record<string, unknown>[] = [];
  watcher.on('message', (_topic, payload) => events.push(JSON.parse(payload.toString()) as Record<string, unknown>));
  await watcher.subscribeAsync('outpost/v1/gw-test-1/events', { qos: 1 });

  const world = deviceWorld();
  t.teardown(world.cleanup);
  const flag = join(world.dir, 'app-up');
  world.writeConfig({
    broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key, connectTimeoutMs: 2000, reconnectMinMs: 200, reconnectMaxMs: 1000 },
    health: { checks: [{ name: 'app', kind: 'exec', command: ['/usr/bin/test', '-e', flag], intervalSec: 1, failAfter: 1 }] },
  });
  const daemon = world.run();
  t.teardown(() => void daemon.kill('SIGKILL'));
  let output = '';
  daemon.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));

  const failing = await until('the failing transition on the events topic', async () => events.find((e) => e.type === 'health-check-changed' && e.to === 'failing'), 20_000);
  t.match(failing, { schema: 'outpost.event/1', type: 'health-check-changed', check: 'app', severity: 'wanted', to: 'failing', at: String });

  await broker.stop();
  writeFileSync(flag, '');
  await until('the check passing, the broker down', async () => {
    const r = await world.cli(['health', '--json']);
    return (JSON.parse(r.stdout) as Report).checks[0]?.status === 'passing' ? true : undefined;
  }, 20_000);
  // The report changes a moment before the event is stored: stored while the broker is down.
  await sleep(500);
  await broker.start();
  const passing = await until('the passing transition once the broker is back', async () => events.find((e) => e.type === 'health-check-changed' && e.to === 'passing'), 20_000);
  t.match(passing, { check: 'app', from: 'failing', to: 'passing' });

  daemon.kill('SIGTERM');
  t.equal((await daemon).exitCode, 0);
  t.notMatch(output, /no outbox/, 'no event was only logged');
});

t.test('without a broker the events are only logged, and the outbox code is not loaded', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  // Records every module the daemon loads (a loader hook, as test/fixtures/wiring-modules.ts).
  const modules = join(world.dir, 'modules.txt');
  const loader = join(world.dir, 'loader.mjs');
  writeFileSync(loader, `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  appendFileSync(${JSON.stringify(modules)}, url + '\\n');\n  return next(url, context);\n}\n`);
  const hook = join(world.dir, 'hook.mjs');
  writeFileSync(hook, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(loader).href)});\n`);
  world.writeConfig({ health: { checks: [{ name: 'app', kind: 'exec', command: ['/bin/false'], intervalSec: 1, failAfter: 1 }] } });
  const daemon = world.run({ NODE_OPTIONS: `--import ${hook}` });
  t.teardown(() => void daemon.kill('SIGKILL'));
  let output = '';
  daemon.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  await until('the event logged', async () => (output.includes('health event (no outbox: no broker is configured)') ? true : undefined), 20_000);
  daemon.kill('SIGTERM');
  t.equal((await daemon).exitCode, 0);
  const loaded = readFileSync(modules, 'utf8').split('\n');
  t.ok(loaded.some((url) => /\/health\/service\.js$/.test(url)), 'the recording sees what the daemon loads');
  t.same(loaded.filter((url) => /\/link\/(outbox|drain)\.js$|\/outbox-wiring\.js$/.test(url)), [], 'no outbox code');
});
