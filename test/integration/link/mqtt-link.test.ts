/**
 * The link against a real mosquitto with mutual TLS (require_certificate, identity from the CN).
 * Every subtest uses its own device id (own client certificate), so retained messages of one
 * subtest cannot satisfy another's assertions.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'mqtt';
import type { BrokerConfig } from '../../../runtime/config/index.js';
import { createLink, type Link, type LinkStatus } from '../../../runtime/link/index.js';
import { createLogger, type LogRecord } from '../../../runtime/logs/index.js';
import { onlineTopic, parseStateDocument, stateTopic, type StateDocument } from '../../../runtime/protocol/index.js';
import { startMosquitto } from '../../../scripts/world/mosquitto.js';
import { connectObserver, type Observer } from '../../../scripts/world/observer.js';
import { issueClientCert, type CertPair } from '../../../scripts/world/pki.js';
import { startLinkBroker, testLinkTiming } from '../../fixtures/link/broker.js';

/** All the helpers need of a tap test: somewhere to register clean-up. */
type Test = { teardown(fn: () => unknown): void };

const { dir, pki, broker } = await startLinkBroker('outpost-link-', (fn) => t.teardown(fn));
const timing = testLinkTiming;

function brokerConfig(url: string, identity: CertPair, caFile = pki.ca.cert): BrokerConfig {
  return { url, caFile, certFile: identity.cert, keyFile: identity.key, ...timing };
}

function stateDoc(deviceId: string, health: StateDocument['health'] = 'ok'): StateDocument {
  return { schema: 'outpost.state/1', deviceId, version: '0.0.0-test', bootedCommit: null, health, updatedAt: new Date().toISOString() };
}

function makeLink(t: Test, deviceId: string, config: BrokerConfig, records: LogRecord[] = []): Link {
  const log = createLogger({ level: 'debug', sinks: [(r) => records.push(r)], component: 'test' });
  const link = createLink({ broker: config, deviceId, log, version: '0.0.0-test' });
  t.teardown(() => link.stop());
  return link;
}

function waitForStatus(link: Link, match: (s: LinkStatus) => boolean, timeoutMs = 5_000): Promise<LinkStatus> {
  if (match(link.status)) return Promise.resolve(link.status);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`link status did not match within ${timeoutMs} ms; now ${JSON.stringify(link.status)}`));
    }, timeoutMs);
    const off = link.onStatus((s) => {
      if (!match(s)) return;
      clearTimeout(timer);
      off();
      resolve(s);
    });
  });
}

async function observe(t: Test, url: string, deviceId: string): Promise<Observer> {
  const observer = await connectObserver({ url, caFile: pki.ca.cert, identity: pki.observer, topics: [onlineTopic(deviceId), stateTopic(deviceId)] });
  t.teardown(() => observer.close());
  return observer;
}

async function device(id: string): Promise<{ id: string; identity: CertPair }> {
  return { id, identity: await issueClientCert(pki, id) };
}

t.test('(a) connects with a good client certificate; online and state are retained', async (t) => {
  const { id, identity } = await device('gw-a');
  const link = makeLink(t, id, brokerConfig(broker.url, identity));
  const doc = stateDoc(id);
  link.publishState(doc);
  t.equal(link.status.state, 'offline', 'nothing happens before start()');
  link.start();
  const connected = await waitForStatus(link, (s) => s.state === 'connected');
  t.equal(connected.connects, 1);
  const observer = await observe(t, broker.url, id);
  const online = await observer.waitFor(onlineTopic(id));
  t.equal(online.payload, 'true');
  t.equal(online.retain, true, 'online is retained');
  const state = await observer.waitFor(stateTopic(id));
  t.equal(state.retain, true, 'state is retained');
  t.same(parseStateDocument(state.payload), doc);
  const log = await readFile(broker.logFile, 'utf8');
  t.match(log, new RegExp(`New client connected from .* as ${id} \\(p5, c0, k5, u'${id}'\\)`), 'MQTT 5, clean start false, identity from the certificate CN');
});

t.test('(b) publishState after connect replaces the retained state', async (t) => {
  const { id, identity } = await device('gw-b');
  const link = makeLink(t, id, brokerConfig(broker.url, identity));
  link.publishState(stateDoc(id, 'unknown'));
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  const live = await observe(t, broker.url, id);
  await live.waitFor(stateTopic(id), (m) => parseStateDocument(m.payload).health === 'unknown');
  const next = stateDoc(id, 'degraded');
  link.publishState(next);
  const update = await live.waitFor(stateTopic(id), (m) => !m.retain);
  t.same(parseStateDocument(update.payload), next, 'subscribers get the update live');
  const late = await observe(t, broker.url, id);
  const retained = await late.waitFor(stateTopic(id));
  t.equal(retained.retain, true);
  t.same(parseStateDocument(retained.payload), next, 'a later subscriber gets the new document as retained');
});

t.test('(c) an untrusted broker certificate never connects and says why', async (t) => {
  const { id, identity } = await device('gw-c');
  const records: LogRecord[] = [];
  const link = makeLink(t, id, brokerConfig(broker.url, identity, pki.wrongCa.cert), records);
  const seen: LinkStatus[] = [];
  link.onStatus((s) => seen.push(s));
  link.start();
  await waitForStatus(link, () => seen.filter((s) => s.state === 'connecting').length >= 3, 5_000);
  t.notOk(seen.some((s) => s.state === 'connected'), 'never connected');
  t.equal(link.status.connects, 0);
  t.match(link.status.lastError ?? '', /^TLS certificate verify failed: the broker's certificate is not signed by a CA in broker\.caFile/);
  t.match(link.status.lastError ?? '', pki.wrongCa.cert, 'names the CA file');
  const warnings = records.filter((r) => r.level === 'warn' && r.msg === 'cannot connect to broker');
  t.equal(warnings.length, 1, 'the repeating failure is logged once at warn, retries at debug');
  t.match(warnings[0]?.['reason'], /certificate verify failed/);
  const observer = await observe(t, broker.url, id);
  await sleep(200);
  t.same(observer.messages, [], 'nothing was ever published for this device');
});

t.test('(c) a client certificate from another CA is refused by the broker', async (t) => {
  const id = 'gw-main'; // wrongClient has CN=gw-main, so only the issuing CA differs
  const link = makeLink(t, id, { ...brokerConfig(broker.url, pki.wrongClient) });
  link.start();
  await waitForStatus(link, (s) => s.lastError !== undefined && s.state === 'offline');
  t.equal(link.status.connects, 0);
  t.match(link.status.lastError ?? '', /the broker rejected this device's client certificate broker\.certFile/);
  await sleep(300);
  t.equal(link.status.connects, 0, 'still not connected after retries');
  t.match(await readFile(broker.logFile, 'utf8'), /certificate verify failed/, 'the broker log shows the refusal');
});

t.test('(d) after a broker restart the link reconnects by itself and republishes', async (t) => {
  const own = await startMosquitto({ dir: await mkdtemp(join(dir, 'restart-')), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  t.teardown(() => own.stop());
  const { id, identity } = await device('gw-d');
  const records: LogRecord[] = [];
  const link = makeLink(t, id, brokerConfig(own.url, identity), records);
  const seen: LinkStatus['state'][] = [];
  link.onStatus((s) => seen.push(s.state));
  const doc = stateDoc(id, 'degraded');
  link.publishState(doc);
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  await own.stop();
  const offline = await waitForStatus(link, (s) => s.state === 'offline');
  t.match(offline.lastError ?? '', /./, 'offline with a reason');
  await sleep(1_500); // several failed attempts, so the backoff has reached its cap
  t.equal(link.status.connects, 1);
  await own.start();
  const restartedAt = Date.now();
  const back = await waitForStatus(link, (s) => s.state === 'connected', 5_000);
  const tookMs = Date.now() - restartedAt;
  t.ok(tookMs <= timing.reconnectMaxMs + 1_000, `reconnected within the backoff cap (+ handshake): ${tookMs} ms`);
  t.equal(back.connects, 2);
  t.same(seen.slice(0, 3), ['connecting', 'connected', 'offline']);
  t.ok(seen.slice(3).includes('connecting'));
  // persistence is off: the broker lost everything, so these can only come from the republish
  const observer = await observe(t, own.url, id);
  t.equal((await observer.waitFor(onlineTopic(id))).payload, 'true');
  t.same(parseStateDocument((await observer.waitFor(stateTopic(id))).payload), doc);
  // The backoff must start over after a successful connect, not continue at the cap.
  records.length = 0;
  await own.stop();
  await waitForStatus(link, (s) => s.state === 'offline');
  const lost = records.find((r) => r.msg === 'broker connection lost');
  t.equal(lost?.['attempt'], 1, 'first retry after the drop');
  t.ok(Number(lost?.['retryInMs']) <= 2 * timing.reconnectMinMs, `retry delay reset: ${String(lost?.['retryInMs'])} ms`);
});

t.test('(e) stop() publishes online=false retained and disconnects cleanly', async (t) => {
  const { id, identity } = await device('gw-e');
  const link = makeLink(t, id, brokerConfig(broker.url, identity));
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  const live = await observe(t, broker.url, id);
  await live.waitFor(onlineTopic(id), (m) => m.payload === 'true');
  const started = Date.now();
  await link.stop();
  t.ok(Date.now() - started < 3_000, 'stop is bounded');
  t.equal(link.status.state, 'stopped');
  await live.waitFor(onlineTopic(id), (m) => m.payload === 'false');
  const late = await observe(t, broker.url, id);
  const retained = await late.waitFor(onlineTopic(id));
  t.same([retained.payload, retained.retain], ['false', true]);
  t.match(await readFile(broker.logFile, 'utf8'), new RegExp(`Received DISCONNECT from ${id}`), 'a clean DISCONNECT, not a dropped socket');
  await link.stop();
  link.start();
  await sleep(300);
  t.equal(link.status.state, 'stopped', 'a stopped link stays stopped');
});

t.test('stop() while the broker is unreachable is immediate', async (t) => {
  const { id, identity } = await device('gw-g');
  const link = makeLink(t, id, brokerConfig('mqtts://127.0.0.1:1', identity));
  link.start();
  await waitForStatus(link, (s) => s.state === 'offline' && s.lastError !== undefined);
  t.match(link.status.lastError ?? '', /refused the TCP connection/);
  const started = Date.now();
  await link.stop();
  t.ok(Date.now() - started < 200, 'no publish, no wait');
  t.equal(link.status.state, 'stopped');
});

t.test('(f) the broker publishes the will online=false when the device dies', async (t) => {
  const { id, identity } = await device('gw-f');
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../../fixtures/link/run-link.ts')], {
    cwd: join(import.meta.dirname, '../../..'),
    env: { ...process.env, OUTPOST_TEST_LINK: JSON.stringify({ broker: brokerConfig(broker.url, identity), deviceId: id }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child link did not connect; stderr: ${stderr}`)), 15_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      if ((JSON.parse(line) as LinkStatus).state !== 'connected') return;
      clearTimeout(timer);
      resolve();
    });
  });
  const live = await observe(t, broker.url, id);
  await live.waitFor(onlineTopic(id), (m) => m.payload === 'true');
  const killedAt = Date.now();
  child.kill('SIGKILL');
  t.equal(await exited, 'SIGKILL');
  const will = await live.waitFor(onlineTopic(id), (m) => m.payload === 'false', 5_000);
  t.ok(will.at - killedAt < 2_000, `will published promptly: ${will.at - killedAt} ms after the kill`);
  const late = await observe(t, broker.url, id);
  const retained = await late.waitFor(onlineTopic(id));
  t.same([retained.payload, retained.retain], ['false', true], 'the will is retained');
  t.notMatch(await readFile(broker.logFile, 'utf8'), new RegExp(`Received DISCONNECT from ${id}`), 'no clean DISCONNECT happened');
});

t.test('the recommended ACL in docs/protocol.md lets a device work and keeps others out', async (t) => {
  const doc = await readFile(join(import.meta.dirname, '../../../docs/protocol.md'), 'utf8');
  const acl = /```\n(# devices[\s\S]*?)```/.exec(doc)?.[1];
  t.ok(acl, 'the ACL block is in the doc');
  const aclDir = await mkdtemp(join(dir, 'acl-'));
  await writeFile(join(aclDir, 'acl'), `${acl ?? ''}\nuser outpost-observer\ntopic read outpost/v1/#\n`);
  const own = await startMosquitto({ dir: aclDir, caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key, extraConfig: [`acl_file ${join(aclDir, 'acl')}`] });
  t.teardown(() => own.stop());
  const { id, identity } = await device('gw-acl');
  const link = makeLink(t, id, brokerConfig(own.url, identity));
  link.publishState(stateDoc(id));
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  const observer = await observe(t, own.url, id);
  t.equal((await observer.waitFor(onlineTopic(id))).payload, 'true');
  t.same(parseStateDocument((await observer.waitFor(stateTopic(id))).payload).deviceId, id);

  const intruder = await device('gw-intruder');
  const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(intruder.identity.cert), readFile(intruder.identity.key)]);
  const client = connect(own.url, { protocolVersion: 5, clientId: intruder.id, reconnectPeriod: 0, ca, cert, key });
  t.teardown(() => client.endAsync(true));
  client.on('error', () => undefined);
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  const refused = await client.publishAsync(stateTopic(id), 'forged', { qos: 1, retain: true }).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.match(String(refused), /Not authorized/, 'another device cannot write this device\'s state');
  await link.stop();
  t.equal((await observer.waitFor(onlineTopic(id), (m) => m.payload === 'false')).payload, 'false', 'online=false is allowed for the device');
  t.notOk(observer.messages.some((m) => m.payload === 'forged'), 'the forged state never reached subscribers');
});
