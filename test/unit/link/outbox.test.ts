/**
 * The persistent outbox on a real store in a temp dir: order across classes, ack, restart,
 * eviction and its persisted drop counts, refusal of oversized messages, the caller's-batch path,
 * and flat memory with 100k entries queued.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { z } from 'zod';
import { Outbox, type OutboxClass, type OutboxMessage } from '../../../runtime/link/index.js';
import { createLogger, type LogRecord } from '../../../runtime/logs/index.js';
import { Store } from '../../../runtime/store/index.js';

interface World {
  location: string;
  store: Store;
  records: LogRecord[];
  open(maxBytes?: number): Promise<Outbox>;
  reopen(): Promise<void>;
}

async function world(t: Test): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-outbox-'));
  const location = join(dir, 'db');
  const records: LogRecord[] = [];
  const log = createLogger({ level: 'debug', sinks: [(r) => records.push(r)] });
  const w: World = {
    location,
    store: await Store.open({ location, version: 1 }),
    records,
    open: (maxBytes = 1024 * 1024) => Outbox.open(w.store, { maxBytes, log }),
    async reopen() {
      await w.store.close();
      w.store = await Store.open({ location, version: 1 });
    },
  };
  t.teardown(async () => {
    await w.store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return w;
}

/** A message of exactly `bytes` (topic + payload). */
function msg(cls: OutboxClass, payload: string, bytes?: number): OutboxMessage {
  const topic = `t/${cls}`;
  const body = bytes === undefined ? payload : payload.padEnd(bytes - topic.length, '.');
  return { class: cls, topic, payload: body };
}

async function drainAll(outbox: Outbox): Promise<string[]> {
  const out: string[] = [];
  for (let entry = await outbox.next(); entry !== undefined; entry = await outbox.next()) {
    out.push(entry.payload.replace(/\.+$/, ''));
    await outbox.ack(entry.key);
  }
  return out;
}

t.test('next() is the oldest of the highest-priority class; ack removes it', async (t) => {
  const w = await world(t);
  const outbox = await w.open();
  t.equal(await outbox.next(), undefined, 'empty');
  await outbox.put(msg('log', 'l1'));
  await outbox.put(msg('event', 'e1'));
  await outbox.put(msg('result', 'r1'));
  await outbox.put(msg('log', 'l2'));
  await outbox.put({ class: 'result', topic: 'reply/here', payload: 'r2', correlationData: Buffer.from([1, 2, 3]).toString('base64') });
  await outbox.put(msg('event', 'e2'));
  const first = await outbox.next();
  t.match(first, { key: /^0\/0{15}3$/, class: 'result', topic: 't/result', payload: 'r1', bytes: 'r1'.length + 't/result'.length });
  t.same(await outbox.next(), first, 'next() does not consume');
  t.same(outbox.stats(), { entries: 6, bytes: 7 + 9 + 10 + 7 + 16 + 9, maxBytes: 1024 * 1024, dropped: { result: 0, event: 0, log: 0 } });
  await outbox.ack(first!.key);
  const second = await outbox.next();
  t.match(second, { class: 'result', topic: 'reply/here', payload: 'r2', correlationData: 'AQID' });
  await outbox.ack(second!.key);
  await outbox.ack(second!.key);
  t.equal(outbox.stats().entries, 4, 'a second ack of the same key changes nothing');
  t.same(await drainAll(outbox), ['e1', 'e2', 'l1', 'l2']);
  t.same(outbox.stats(), { entries: 0, bytes: 0, maxBytes: 1024 * 1024, dropped: { result: 0, event: 0, log: 0 } });
});

t.test('a restart finds the same queue and continues the sequence', async (t) => {
  const w = await world(t);
  let outbox = await w.open();
  await outbox.put(msg('event', 'e1'));
  await outbox.put(msg('result', 'r1'));
  await outbox.put(msg('log', 'l1'));
  const before = await outbox.next();
  const stats = outbox.stats();
  await outbox.ack(before!.key);
  await outbox.put(msg('log', 'l2'));
  await w.reopen();
  outbox = await w.open();
  t.same(outbox.stats(), { ...stats, bytes: stats.bytes - before!.bytes + msg('log', 'l2').topic.length + 2 }, 'counters recomputed at open');
  t.match(await outbox.next(), { class: 'event', payload: 'e1' });
  await outbox.put(msg('event', 'e2'));
  await outbox.put(msg('result', 'r2'));
  const seqs = (await w.store.collection('outbox', z.unknown()).entries()).map(([key]) => key);
  t.same(seqs, ['0/0000000000000006', '1/0000000000000001', '1/0000000000000005', '2/0000000000000003', '2/0000000000000004'], 'the sequence went on after the largest key on disk, even one acked before');
  t.same(await drainAll(outbox), ['r2', 'e1', 'e2', 'l1', 'l2']);
});

t.test('a message larger than the whole outbox is refused, naming the limit', async (t) => {
  const w = await world(t);
  const outbox = await w.open(100);
  await t.rejects(outbox.put(msg('result', 'big', 101)), { code: 'PROTOCOL_INVALID', message: /101 bytes.*maxBytes 100/ });
  await outbox.put(msg('result', 'fits', 100));
  t.equal(outbox.stats().bytes, 100, 'exactly the limit fits');
  await t.rejects(outbox.put(msg('event', 'x', 101), w.store.batch()), { code: 'PROTOCOL_INVALID' }, 'also with a batch');
  await t.rejects(outbox.put({ class: 'bogus' as OutboxClass, topic: 't', payload: '' }), { code: 'INTERNAL' });
});

t.test('eviction: lowest class first, oldest first; never a higher class; counts persisted', async (t) => {
  const w = await world(t);
  let outbox = await w.open(100);
  for (const m of [msg('log', 'l1', 10), msg('event', 'e1', 10), msg('log', 'l2', 10), msg('result', 'r1', 20), msg('event', 'e2', 20), msg('log', 'l3', 10)]) await outbox.put(m);
  t.equal(outbox.stats().bytes, 80);
  await outbox.put(msg('event', 'e3', 35));
  t.same(outbox.stats().dropped, { result: 0, event: 0, log: 2 }, 'two logs made room for 15 bytes');
  await outbox.put(msg('result', 'r2', 45));
  t.same(outbox.stats().dropped, { result: 0, event: 2, log: 3 }, 'the last log, then the oldest events');
  t.same(outbox.stats().entries, 3);
  t.ok(outbox.stats().bytes <= 100);
  t.match(w.records.find((r) => r.msg.startsWith('outbox full')), { level: 'warn' });

  await outbox.put(msg('log', 'l4', 40));
  t.same(outbox.stats().dropped, { result: 0, event: 2, log: 4 }, 'a log finding no room among logs is itself dropped, the event stays');
  t.match(w.records.at(-1), { level: 'warn', msg: /this message is dropped/, class: 'log' });

  await w.reopen();
  outbox = await w.open(100);
  t.same(outbox.stats().dropped, { result: 0, event: 2, log: 4 }, 'drop counts survive a restart');
  t.same(outbox.unreportedDrops(), { result: 0, event: 2, log: 4 });
  t.same(await drainAll(outbox), ['r1', 'r2', 'e3']);
});

t.test('reportDrops queues the report and marks the counts reported in one batch', async (t) => {
  const w = await world(t);
  let outbox = await w.open(60);
  for (let i = 0; i < 4; i++) await outbox.put(msg('log', `l${i}`, 20));
  t.same(outbox.unreportedDrops(), { result: 0, event: 0, log: 1 });
  const seen: unknown[] = [];
  const key = await outbox.reportDrops((dropped) => {
    seen.push(dropped);
    return { class: 'event', topic: 'ev', payload: String(dropped.log) };
  });
  t.match(key, /^1\//);
  t.same(seen, [{ result: 0, event: 0, log: 1 }]);
  t.same(outbox.stats().dropped, { result: 0, event: 0, log: 2 }, 'the report evicted a log to fit');
  t.same(outbox.unreportedDrops(), { result: 0, event: 0, log: 1 }, 'that eviction is for the next report');
  t.equal(await outbox.has(key!), true);
  await w.reopen();
  outbox = await w.open(60);
  t.same(outbox.unreportedDrops(), { result: 0, event: 0, log: 1 }, 'reported counts persisted');
  t.match(await outbox.next(), { key, topic: 'ev', payload: '1' });
  await outbox.ack(key!);
  t.equal(await outbox.has(key!), false);
  t.ok(await outbox.reportDrops((dropped) => ({ class: 'event', topic: 'ev', payload: String(dropped.log) })), 'the next report fits without evicting');
  t.same(outbox.unreportedDrops(), { result: 0, event: 0, log: 0 });
  t.equal(await outbox.reportDrops(() => t.fail('nothing to report') as never), undefined, 'nothing to report: no message');
});

t.test("put with the caller's batch: stored with it, counted after its commit, evicted after it", async (t) => {
  const w = await world(t);
  const outbox = await w.open(50);
  const state = w.store.collection('state', z.strictObject({ done: z.boolean() }));
  let stored = 0;
  const off = outbox.onStored(() => (stored += 1));
  await outbox.put(msg('log', 'l1', 30));

  const batch = w.store.batch().put(state, 'cmd-1', { done: true });
  await outbox.put(msg('result', 'r1', 30), batch);
  t.equal(await outbox.next().then((e) => e?.class), 'log', 'nothing visible before the commit');
  t.equal(outbox.stats().entries, 1, 'not counted before the commit');
  t.equal(stored, 1);
  await batch.commit();
  t.same(await state.get('cmd-1'), { done: true });
  t.equal(stored, 2, 'listeners told after the commit');
  await t.resolves(async () => {
    for (let i = 0; i < 50 && outbox.stats().bytes > 50; i++) await new Promise((r) => setTimeout(r, 10));
  });
  t.same(outbox.stats(), { entries: 1, bytes: 30, maxBytes: 50, dropped: { result: 0, event: 0, log: 1 } }, 'back under the limit by evicting the log');
  t.match(await outbox.next(), { class: 'result', payload: /^r1/ });

  const abandoned = w.store.batch();
  await outbox.put(msg('result', 'never', 10), abandoned);
  t.equal(outbox.stats().entries, 1, 'a batch never committed leaves nothing');
  off();
  await outbox.put(msg('event', 'e1', 10));
  t.equal(stored, 2, 'a removed listener is not called');
});

t.test('lowering maxBytes evicts at open', async (t) => {
  const w = await world(t);
  let outbox = await w.open(100);
  for (const m of [msg('result', 'r', 30), msg('event', 'e', 30), msg('log', 'l', 30)]) await outbox.put(m);
  await w.reopen();
  outbox = await w.open(60);
  t.same(outbox.stats(), { entries: 2, bytes: 60, maxBytes: 60, dropped: { result: 0, event: 0, log: 1 } });
});

// The bench (bench/commands.ts) queues 100k entries; here 25k larger ones hold the same 20+ MB in
// a quarter of the time.
t.test('25k entries (20+ MB): counted at open in flat memory, drained in order', async (t) => {
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = (): number => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  const w = await world(t);
  let outbox = await w.open(64 * 1024 * 1024);
  const total = 25_000;
  const payload = 'x'.repeat(800);
  for (let i = 0; i < total; i += 2500) {
    const batch = w.store.batch();
    for (let j = i; j < i + 2500; j++) await outbox.put({ class: j % 10 === 0 ? 'result' : 'log', topic: 't', payload: `${payload}${j}` }, batch);
    await batch.commit();
  }
  t.equal(outbox.stats().entries, total);
  await w.reopen();
  // A first open warms up the code paths (JIT, the store's iterator), so the measured one shows data only.
  await w.open(64 * 1024 * 1024);

  // The least of three opens: what the queue holds shows in every one, the collector's page
  // bookkeeping (~2 MB now and then, either way) not.
  let growth = Infinity;
  for (let i = 0; i < 3; i++) {
    const before = heap();
    outbox = await w.open(64 * 1024 * 1024);
    growth = Math.min(growth, heap() - before);
  }
  const queuedBytes = outbox.stats().bytes;
  t.equal(outbox.stats().entries, total, 'all counted at open');
  t.ok(queuedBytes > 20_000_000, `the queue holds ${queuedBytes} bytes`);
  // ~1 MiB measured; an index of 100 bytes an entry (2.5 MB) would fail too, not only held payloads.
  t.ok(growth < 2 * 1024 * 1024, `heap grew ${growth} bytes with ${queuedBytes} bytes queued (held entries would be > 20 MB, a per-entry index > 2 MB)`);

  t.match(await outbox.next(), { class: 'result', payload: `${payload}0` });
  // Squeezing it to 4 MiB evicts ~20k logs in one streamed pass; the 2.5k results (~2 MiB) stay.
  await w.reopen();
  outbox = await w.open(4 * 1024 * 1024);
  t.ok(outbox.stats().bytes <= 4 * 1024 * 1024);
  t.equal(outbox.stats().dropped.result, 0, 'no result evicted while logs were left');
  const order: number[] = [];
  for (let entry = await outbox.next(); entry !== undefined && order.length < 20; entry = await outbox.next()) {
    order.push(Number(entry.payload.slice(payload.length)));
    await outbox.ack(entry.key);
  }
  t.same(order.slice(0, 3), [0, 10, 20], 'results first, oldest first');
});

t.test('reading skips what was acked and the empty classes: a drained backlog leaves tombstones LevelDB would step over at every read', async (t) => {
  const w = await world(t);
  const reads: { gte?: string }[] = [];
  // Records where each read of the queue starts (the reads' cost is in bench/README.md, never timed here).
  const recording = new Proxy(w.store, {
    get(target, property, receiver) {
      if (property !== 'collection') return Reflect.get(target, property, receiver) as unknown;
      return (name: string, schema: z.ZodType) => {
        const collection = target.collection(name, schema);
        return new Proxy(collection, {
          get(c, p, r) {
            if (p !== 'range' && p !== 'iterate') return Reflect.get(c, p, r) as unknown;
            return (options: { gte?: string }) => {
              reads.push(options);
              return (c[p] as (o: unknown) => unknown).call(c, options);
            };
          },
        });
      };
    },
  });
  const outbox = await Outbox.open(recording, { maxBytes: 1024 * 1024, log: createLogger({ level: 'error', sinks: [] }) });
  for (const payload of ['e1', 'e2', 'e3']) await outbox.put(msg('event', payload));
  const late = w.store.batch();
  await outbox.put(msg('event', 'e-late'), late);
  await outbox.put(msg('event', 'e4'));
  reads.length = 0;

  const read: string[] = [];
  const returned: string[] = [];
  for (let entry = await outbox.next(); entry !== undefined; entry = await outbox.next()) {
    read.push(entry.payload);
    returned.push(entry.key);
    await outbox.ack(entry.key);
    // A caller's batch committing after later messages were read: its older key is read still.
    if (entry.payload === 'e4') await late.commit();
  }
  t.same(read, ['e1', 'e2', 'e3', 'e4', 'e-late'], 'every message once; the late commit after the ones read before it');
  t.ok(reads.every((r) => r.gte?.startsWith('1/')), `the empty classes are never read: ${JSON.stringify(reads.map((r) => r.gte))}`);
  t.same(reads.slice(1).map((r) => r.gte), [returned[0], returned[1], returned[2], returned[4]], "after the first read, each starts at the last message read, not at the class start; the late commit moves it back to its own key");
  t.equal(reads.length, 5, 'and an empty queue is not read at all');
});
