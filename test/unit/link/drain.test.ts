/**
 * The outbox drain against a fake link: it waits for the link, sends one entry at a time in key
 * order, waits out failures without spinning, removes what the broker refuses, and stops promptly
 * with an entry in flight (which stays queued).
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutpostError } from '../../../runtime/errors.js';
import { Outbox, startOutboxDrain, type LinkStatus, type LinkStatusListener, type OutboxDrainOptions } from '../../../runtime/link/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { Store } from '../../../runtime/store/index.js';
import { until } from '../../../scripts/world/until.js';

type FakeLink = OutboxDrainOptions['link'] & { sent: string[]; attempts: number; setState(state: LinkStatus['state']): void; answer: (payload: string) => Promise<void> };

function fakeLink(): FakeLink {
  const listeners = new Set<LinkStatusListener>();
  let status: LinkStatus = { state: 'offline', since: new Date().toISOString(), connects: 0 };
  const link: FakeLink = {
    deviceId: 'gw-fake',
    sent: [],
    attempts: 0,
    answer: async () => undefined,
    get status() {
      return status;
    },
    onStatus(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    setState(state) {
      status = { ...status, state };
      for (const l of listeners) l(status);
    },
    async publish(_topic, payload) {
      link.attempts += 1;
      const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString();
      await link.answer(text);
      link.sent.push(text);
    },
  };
  return link;
}

async function openOutbox(t: Test, maxBytes = 1024 * 1024): Promise<Outbox> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-drain-'));
  const store = await Store.open({ location: join(dir, 'db'), version: 1 });
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return Outbox.open(store, { maxBytes, log: silentLogger });
}

t.test('waits for the link, then sends in order, one at a time', async (t) => {
  const outbox = await openOutbox(t);
  const link = fakeLink();
  const drain = startOutboxDrain({ outbox, link, log: silentLogger });
  t.teardown(() => drain.stop());
  await outbox.put({ class: 'event', topic: 'e', payload: 'e1' });
  await outbox.put({ class: 'result', topic: 'r', payload: 'r1' });
  await sleep(50);
  t.equal(link.attempts, 0, 'nothing while offline');
  link.setState('connected');
  await until('both sent', () => (link.sent.length === 2 ? true : undefined), 2_000);
  t.same(link.sent, ['r1', 'e1']);
  await outbox.put({ class: 'log', topic: 'l', payload: 'l1' });
  await until('woken by the put', () => (link.sent.length === 3 ? true : undefined), 2_000);
  t.equal(outbox.stats().entries, 0);
});

t.test('a failed publish is retried after retryMs, not in a loop; a refused one is removed', async (t) => {
  const outbox = await openOutbox(t);
  const link = fakeLink();
  link.setState('connected');
  let fail = true;
  link.answer = async (payload) => {
    if (payload === 'refused') throw new OutpostError('LINK_UNAVAILABLE', 'the broker refused the message', { transient: false });
    if (fail) throw new OutpostError('LINK_UNAVAILABLE', 'no PUBACK');
  };
  const drain = startOutboxDrain({ outbox, link, log: silentLogger, retryMs: 300 });
  t.teardown(() => drain.stop());
  const putAt = Date.now();
  await outbox.put({ class: 'result', topic: 'r', payload: 'r1' });
  await sleep(100);
  await outbox.put({ class: 'event', topic: 'e', payload: 'e1' });
  await sleep(100);
  t.equal(link.attempts, 1, 'one attempt: a put during the wait does not bring the retry forward');
  await until('the retry', () => (link.attempts >= 2 ? true : undefined), 2_000);
  t.ok(Date.now() - putAt >= 290, 'tried again after retryMs');
  fail = false;
  link.setState('offline');
  link.setState('connected');
  await until('sent after the connect', () => (link.sent.length === 2 ? true : undefined), 2_000);
  t.same(link.sent, ['r1', 'e1']);

  await outbox.put({ class: 'result', topic: 'r', payload: 'refused' });
  await outbox.put({ class: 'event', topic: 'e', payload: 'e2' });
  await until('past the refused one', () => (link.sent.length === 3 ? true : undefined), 2_000);
  t.same(link.sent.at(-1), 'e2');
  t.equal(outbox.stats().entries, 0, 'the refused message was removed');
});

t.test('stop() with a publish in flight resolves at once and the entry stays queued', async (t) => {
  const outbox = await openOutbox(t);
  const link = fakeLink();
  link.answer = () => new Promise(() => undefined);
  link.setState('connected');
  const drain = startOutboxDrain({ outbox, link, log: silentLogger });
  await outbox.put({ class: 'result', topic: 'r', payload: 'r1' });
  await until('in flight', () => (link.attempts === 1 ? true : undefined), 2_000);
  const started = Date.now();
  await drain.stop();
  t.ok(Date.now() - started < 100, 'prompt');
  t.equal(outbox.stats().entries, 1, 'still queued');
});

t.test('drops are reported once, as one event at a time, before what is queued', async (t) => {
  const outbox = await openOutbox(t, 300);
  for (let i = 0; i < 6; i++) await outbox.put({ class: 'log', topic: 'l', payload: `l${i}`.padEnd(99, '.') });
  t.same(outbox.stats().dropped, { result: 0, event: 0, log: 3 });
  // Which removals wait for the disk: a report sent again after a power cut would count its drops twice.
  const acks: { durable: boolean }[] = [];
  const ack = outbox.ack.bind(outbox);
  outbox.ack = async (key, options) => {
    acks.push({ durable: options?.durable === true });
    return ack(key, options);
  };
  const link = fakeLink();
  const drain = startOutboxDrain({ outbox, link, log: silentLogger, eventsTopic: 'ev', now: () => new Date(0) });
  t.teardown(() => drain.stop());
  link.setState('connected');
  await until('drained and reported', () => (outbox.stats().entries === 0 && outbox.unreportedDrops().log === 0 ? true : undefined), 2_000);
  t.same(acks.map((a) => a.durable), link.sent.map((p) => p.startsWith('{')), 'the drop report\'s removal is fsync\'d, the other messages\' are not');
  const reports = link.sent.filter((p) => p.startsWith('{')).map((p) => JSON.parse(p) as { dropped: { log: number } });
  t.match(JSON.parse(link.sent[0] ?? '{}'), { schema: 'outpost.event/1', type: 'outbox-dropped', at: '1970-01-01T00:00:00.000Z', dropped: { result: 0, event: 0 } });
  t.equal(reports.reduce((n, r) => n + r.dropped.log, 0), outbox.stats().dropped.log, 'each drop reported once');
});
