/**
 * The link's command path against a real mosquitto with mutual TLS: `publish` (QoS 1, correlation
 * data, refusals), the inbox (commands queued by the broker while the device was offline; a PUBACK
 * only after the inbox stored the command; redelivery when it could not), and the outbox drain
 * (everything queued during a broker outage delivered in order; drops reported as an event).
 * Every subtest uses its own device id and tears down its links, drains, clients and stores.
 */
import t from 'tap';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type MqttClient } from 'mqtt';
import type { BrokerConfig } from '../../../runtime/config/index.js';
import { isOutpostError } from '../../../runtime/errors.js';
import { createLink, MAX_INBOUND_PACKET_BYTES, Outbox, startOutboxDrain, type InboxMessage, type Link, type LinkOptions, type LinkStatus, type OutboxDroppedEvent } from '../../../runtime/link/index.js';
import { createLogger, type LogRecord } from '../../../runtime/logs/index.js';
import { cmdResultTopic, cmdTopic, eventsTopic } from '../../../runtime/protocol/index.js';
import { Store } from '../../../runtime/store/index.js';
import { startMosquitto } from '../../../scripts/world/mosquitto.js';
import { issueClientCert, type CertPair } from '../../../scripts/world/pki.js';
import { until } from '../../../scripts/world/until.js';
import { startLinkBroker, testLinkTiming } from '../../fixtures/link/broker.js';

/** All the helpers need of a tap test: somewhere to register clean-up. */
type Test = { teardown(fn: () => unknown): void };

const { dir, pki, broker } = await startLinkBroker('outpost-link-cmd-', (fn) => t.teardown(fn));
const timing = testLinkTiming;

function brokerConfig(url: string, identity: CertPair): BrokerConfig {
  return { url, caFile: pki.ca.cert, certFile: identity.cert, keyFile: identity.key, ...timing };
}

function makeLink(t: Test, deviceId: string, config: BrokerConfig, extra: Partial<LinkOptions> = {}, records: LogRecord[] = []): Link {
  const log = createLogger({ level: 'debug', sinks: [(r) => records.push(r)], component: 'test' });
  const link = createLink({ broker: config, deviceId, log, version: '0.0.0-test', ...extra });
  t.teardown(() => link.stop());
  return link;
}

function waitForStatus(link: Link, match: (s: LinkStatus) => boolean, timeoutMs = 5_000): Promise<LinkStatus> {
  return until(`link status matching (now ${JSON.stringify(link.status)})`, () => (match(link.status) ? link.status : undefined), timeoutMs);
}

async function device(id: string): Promise<{ id: string; identity: CertPair }> {
  return { id, identity: await issueClientCert(pki, id) };
}

interface Received {
  topic: string;
  payload: string;
  correlationData?: string;
}

/** An MQTT 5 client of the fleet side; `clean: false` keeps its session (and what is queued for it) across broker restarts. */
async function fleetClient(t: Test, url: string, options: { topics?: string[]; clientId?: string; clean?: boolean } = {}): Promise<{ client: MqttClient; received: Received[] }> {
  const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.observer.cert), readFile(pki.observer.key)]);
  const clean = options.clean ?? true;
  const client = connect(url, {
    protocolVersion: 5,
    clientId: options.clientId ?? `fleet-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    clean,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ca,
    cert,
    key,
    ...(clean ? {} : { properties: { sessionExpiryInterval: 3600 } }),
  });
  t.teardown(() => client.endAsync(true));
  const received: Received[] = [];
  client.on('message', (topic, payload, packet) => {
    const correlation = packet.properties?.correlationData;
    received.push({ topic, payload: payload.toString('utf8'), ...(correlation === undefined ? {} : { correlationData: Buffer.from(correlation).toString('utf8') }) });
  });
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('close', () => reject(new Error(`fleet client could not connect to ${url}`)));
  });
  if (options.topics !== undefined) await client.subscribeAsync(options.topics, { qos: 1 });
  return { client, received };
}

/** The device's subscription is in place once the broker logged its SUBACK. */
async function subscribed(logFile: string, id: string, count = 1): Promise<void> {
  await until(`SUBACK to ${id}`, async () => ((await readFile(logFile, 'utf8')).split(`Sending SUBACK to ${id}\n`).length > count ? true : undefined), 5_000);
}

async function tempStore(t: Test): Promise<Store> {
  const storeDir = await mkdtemp(join(dir, 'store-'));
  const store = await Store.open({ location: join(storeDir, 'db'), version: 1 });
  t.teardown(() => store.close());
  return store;
}

t.test('(a) publish resolves at PUBACK; the subscriber gets payload and correlation data', async (t) => {
  const { id, identity } = await device('gw-pub');
  const fleet = await fleetClient(t, broker.url, { topics: [cmdResultTopic(id)] });
  const link = makeLink(t, id, brokerConfig(broker.url, identity));
  const offline = await link.publish(cmdResultTopic(id), 'too early').then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(isOutpostError(offline, 'LINK_UNAVAILABLE'), 'rejected at once before the link connected');
  t.equal((offline as { transient?: boolean }).transient, true, 'transient');
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  await link.publish(cmdResultTopic(id), '{"result":1}', { correlationData: Buffer.from('corr-1') });
  await link.publish(cmdResultTopic(id), new Uint8Array(Buffer.from('bytes')));
  await until('both results', () => (fleet.received.length >= 2 ? true : undefined), 5_000);
  t.same(fleet.received, [
    { topic: cmdResultTopic(id), payload: '{"result":1}', correlationData: 'corr-1' },
    { topic: cmdResultTopic(id), payload: 'bytes' },
  ]);
  await link.stop();
  await t.rejects(link.publish(cmdResultTopic(id), 'after stop'), { code: 'LINK_UNAVAILABLE' }, 'rejected after stop');
});

t.test('(a) a publish the broker refuses (ACL) rejects as not transient; a dropped connection rejects', async (t) => {
  const aclDir = await mkdtemp(join(dir, 'acl-'));
  const { id, identity } = await device('gw-refused');
  await writeFile(join(aclDir, 'acl'), `user ${id}\ntopic readwrite outpost/v1/${id}/#\n`);
  const own = await startMosquitto({ dir: aclDir, caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key, extraConfig: [`acl_file ${join(aclDir, 'acl')}`] });
  t.teardown(() => own.stop());
  const link = makeLink(t, id, brokerConfig(own.url, identity), { publishTimeoutMs: 500 });
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  await link.publish(eventsTopic(id), 'allowed');
  const refused = await link.publish('outpost/v1/another-device/events', 'forged').then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(isOutpostError(refused, 'LINK_UNAVAILABLE'), 'LINK_UNAVAILABLE');
  t.equal((refused as { transient?: boolean }).transient, false, 'not transient: sending it again cannot help');
  t.match(String(refused), /refused .* Not authorized \(reason code 135\)/);

  // A broker that stops answering: no PUBACK in time rejects, transient.
  const pid = own.pid ?? 0;
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    if (own.running) process.kill(pid, 'SIGCONT');
  });
  const startedAt = Date.now();
  const slow = await link.publish(eventsTopic(id), 'unanswered').then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(isOutpostError(slow, 'LINK_UNAVAILABLE') && slow.transient, 'LINK_UNAVAILABLE, transient');
  t.match(String(slow), /no PUBACK within 500 ms/);
  t.ok(Date.now() - startedAt < 2_000, 'bounded by publishTimeoutMs');
  // The connection dropping with a publish in flight rejects it at once.
  const inFlight = link.publish(eventsTopic(id), 'in flight');
  await sleep(50);
  process.kill(pid, 'SIGKILL');
  await t.rejects(inFlight, { code: 'LINK_UNAVAILABLE', message: /closed before the PUBACK/ });
  await own.stop();
  await waitForStatus(link, (s) => s.state === 'offline');
  await t.rejects(link.publish(eventsTopic(id), 'while down'), { code: 'LINK_UNAVAILABLE', message: /not connected/ });
});

t.test('(b) a command queued by the broker while the device was offline is delivered after it connects', async (t) => {
  const { id, identity } = await device('gw-inbox');
  const delivered: InboxMessage[] = [];
  const first = makeLink(t, id, brokerConfig(broker.url, identity), { inbox: async (m) => void delivered.push(m) });
  first.start();
  await waitForStatus(first, (s) => s.state === 'connected');
  await subscribed(broker.logFile, id);
  await first.stop();

  const fleet = await fleetClient(t, broker.url);
  await fleet.client.publishAsync(cmdTopic(id), 'signed-envelope', { qos: 1, properties: { responseTopic: cmdResultTopic(id), correlationData: Buffer.from('c-42') } });
  await sleep(100);
  t.same(delivered, [], 'nothing while offline');

  const second = makeLink(t, id, brokerConfig(broker.url, identity), { inbox: async (m) => void delivered.push(m) });
  second.start();
  await until('the queued command', () => (delivered.length > 0 ? true : undefined), 5_000);
  t.equal(delivered.length, 1);
  t.equal(delivered[0]?.topic, cmdTopic(id));
  t.equal(delivered[0]?.payload.toString('utf8'), 'signed-envelope');
  t.equal(delivered[0]?.responseTopic, cmdResultTopic(id));
  t.equal(delivered[0]?.correlationData?.toString('utf8'), 'c-42');
  t.ok(Buffer.isBuffer(delivered[0]?.payload));
});

t.test('(b) a message larger than the device takes (CONNECT Maximum Packet Size) never reaches the inbox; the next one does', async (t) => {
  const { id, identity } = await device('gw-huge');
  const delivered: InboxMessage[] = [];
  const link = makeLink(t, id, brokerConfig(broker.url, identity), { inbox: async (m) => void delivered.push(m) });
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  await subscribed(broker.logFile, id);
  const fleet = await fleetClient(t, broker.url);
  await fleet.client.publishAsync(cmdTopic(id), Buffer.alloc(MAX_INBOUND_PACKET_BYTES + 1024, 0x61), { qos: 1 });
  await fleet.client.publishAsync(cmdTopic(id), 'small', { qos: 1 });
  await until('the small one', () => (delivered.some((m) => m.payload.toString('utf8') === 'small') ? true : undefined), 5_000);
  t.same(delivered.map((m) => m.payload.length), [5], 'only the small one was delivered');
});

t.test('(b) when the inbox rejects, the broker delivers again; the PUBACK waits for the inbox', async (t) => {
  const { id, identity } = await device('gw-redeliver');
  const pubacks = async (): Promise<number> => (await readFile(broker.logFile, 'utf8')).split(`Received PUBACK from ${id} `).length - 1;
  const calls: string[] = [];
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const records: LogRecord[] = [];
  const inbox = async (m: InboxMessage): Promise<void> => {
    calls.push(m.payload.toString('utf8'));
    if (calls.length === 1) throw new Error('disk full');
    await held;
  };
  const link = makeLink(t, id, brokerConfig(broker.url, identity), { inbox }, records);
  link.start();
  await waitForStatus(link, (s) => s.state === 'connected');
  await subscribed(broker.logFile, id);
  const acksBefore = await pubacks();

  const fleet = await fleetClient(t, broker.url);
  await fleet.client.publishAsync(cmdTopic(id), 'cmd-1', { qos: 1 });
  await until('the second delivery', () => (calls.length >= 2 ? true : undefined), 5_000);
  t.same(calls, ['cmd-1', 'cmd-1'], 'delivered again after the rejection');
  t.equal(link.status.connects, 2, 'the connection was ended and made again');
  t.match(link.status.lastError, /a delivered command could not be stored: disk full/);
  t.match(records.find((r) => r.level === 'error'), { msg: /could not be stored/ });
  await sleep(300);
  t.equal(await pubacks(), acksBefore, 'no PUBACK while the inbox has not resolved');

  release();
  await until('the PUBACK', async () => ((await pubacks()) > acksBefore ? true : undefined), 5_000);
  await link.stop();

  // Acked: a new session start gets nothing again.
  const again: string[] = [];
  const next = makeLink(t, id, brokerConfig(broker.url, identity), { inbox: async (m) => void again.push(m.payload.toString('utf8')) });
  next.start();
  await waitForStatus(next, (s) => s.state === 'connected');
  await subscribed(broker.logFile, id, 3);
  await sleep(300);
  t.same(again, [], 'not delivered a third time');
});

t.test('(c) entries queued during a broker outage are all delivered in order after it restarts', async (t) => {
  const ownDir = await mkdtemp(join(dir, 'drain-'));
  const own = await startMosquitto({ dir: ownDir, caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key, persistence: true });
  t.teardown(() => own.stop());
  const { id, identity } = await device('gw-drain');
  // A persistent fleet session: the broker queues the device's messages for it across the restart.
  const fleetId = `fleet-drain-${process.pid}`;
  const watcher = await fleetClient(t, own.url, { topics: [`outpost/v1/${id}/#`], clientId: fleetId, clean: false });
  await watcher.client.endAsync();

  const store = await tempStore(t);
  const records: LogRecord[] = [];
  const log = createLogger({ level: 'debug', sinks: [(r) => records.push(r)] });
  const outbox = await Outbox.open(store, { maxBytes: 1024 * 1024, log });
  const link = makeLink(t, id, brokerConfig(own.url, identity));
  link.start();
  const drain = startOutboxDrain({ outbox, link, log, retryMs: 200 });
  t.teardown(() => drain.stop());
  await waitForStatus(link, (s) => s.state === 'connected');
  await outbox.put({ class: 'event', topic: eventsTopic(id), payload: 'before' });
  await until('the first entry sent', () => (outbox.stats().entries === 0 ? true : undefined), 5_000);

  await own.stop();
  await waitForStatus(link, (s) => s.state === 'offline');
  const expectedResults: string[] = [];
  const expectedEvents: string[] = [];
  for (let i = 0; i < 20; i++) {
    if (i % 3 === 0) {
      const batch = store.batch();
      await outbox.put({ class: 'result', topic: cmdResultTopic(id), payload: `result-${i}`, correlationData: Buffer.from(`c${i}`).toString('base64') }, batch);
      await batch.commit();
      expectedResults.push(`result-${i}`);
    } else {
      await outbox.put({ class: 'event', topic: eventsTopic(id), payload: `event-${i}` });
      expectedEvents.push(`event-${i}`);
    }
  }
  t.equal(outbox.stats().entries, 20, 'all queued while the broker is down');
  await sleep(300);
  t.equal(outbox.stats().entries, 20, 'nothing is lost to publish attempts while down');

  await own.start();
  await waitForStatus(link, (s) => s.state === 'connected', 10_000);
  await until('the outbox drained', () => (outbox.stats().entries === 0 ? true : undefined), 10_000);

  const fleet = await fleetClient(t, own.url, { clientId: fleetId, clean: false });
  await until('every message at the fleet', () => (fleet.received.filter((m) => m.payload !== 'before' && m.topic !== `outpost/v1/${id}/online` && m.topic !== `outpost/v1/${id}/state`).length >= 20 ? true : undefined), 10_000);
  const sent = fleet.received.filter((m) => m.topic === cmdResultTopic(id) || m.topic === eventsTopic(id)).filter((m) => m.payload !== 'before');
  t.same(sent.map((m) => m.payload), [...expectedResults, ...expectedEvents], 'results first, then events, each in the order queued');
  t.same(sent.filter((m) => m.topic === cmdResultTopic(id)).map((m) => m.correlationData), expectedResults.map((r) => `c${r.slice('result-'.length)}`), 'correlation data sent as bytes');
});

t.test('(c) a full outbox reports its drops as an event once the link is up', async (t) => {
  const { id, identity } = await device('gw-drops');
  const fleet = await fleetClient(t, broker.url, { topics: [eventsTopic(id), `outpost/v1/${id}/logs`] });
  const store = await tempStore(t);
  const log = createLogger({ level: 'debug', sinks: [] });
  const outbox = await Outbox.open(store, { maxBytes: 1_000, log });
  for (let i = 0; i < 15; i++) await outbox.put({ class: 'log', topic: `outpost/v1/${id}/logs`, payload: `log-${String(i).padStart(2, '0')}`.padEnd(100 - `outpost/v1/${id}/logs`.length, '.') });
  t.same(outbox.stats().dropped, { result: 0, event: 0, log: 5 });

  const link = makeLink(t, id, brokerConfig(broker.url, identity));
  const drain = startOutboxDrain({ outbox, link, log, now: () => new Date('2025-01-02T03:04:05.000Z') });
  t.teardown(() => drain.stop());
  await sleep(200);
  t.equal(outbox.stats().entries, 10, 'nothing is sent or reported while the link is down');
  link.start();
  await until('drained and reported', () => (outbox.stats().entries === 0 && Object.values(outbox.unreportedDrops()).every((n) => n === 0) ? true : undefined), 10_000);
  const reports = (): OutboxDroppedEvent[] => fleet.received.filter((m) => m.topic === eventsTopic(id)).map((m) => JSON.parse(m.payload) as OutboxDroppedEvent);
  const surviving = 15 - outbox.stats().dropped.log;
  await until('all at the fleet', () => (fleet.received.length - reports().length === surviving && reports().reduce((n, e) => n + e.dropped.log, 0) === outbox.stats().dropped.log ? true : undefined), 5_000);
  const events = reports();
  t.ok(events.length >= 1, 'at least one report');
  t.match(events[0], { schema: 'outpost.event/1', type: 'outbox-dropped', at: '2025-01-02T03:04:05.000Z', dropped: { result: 0, event: 0 } });
  t.ok((events[0]?.dropped.log ?? 0) >= 5, 'the first report covers the drops made while offline');
  t.equal(events.reduce((n, e) => n + e.dropped.log, 0), outbox.stats().dropped.log, 'every drop reported exactly once (the report itself evicted some)');
  t.equal(fleet.received[0]?.topic, eventsTopic(id), 'the report (class event) goes before the queued logs');
  const logs = fleet.received.filter((m) => m.topic !== eventsTopic(id)).map((m) => m.payload.slice(0, 6));
  t.same(logs, [...logs].sort(), 'the surviving logs in order');
  t.equal(logs.at(-1), 'log-14', 'the newest logs survived');
});
