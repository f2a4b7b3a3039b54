/**
 * The in-process parts of the remote-commands benchmark (bench/commands.ts), run as a child
 * process with the unit's NODE_OPTIONS so outpost's code and its baselines see the daemon's flags:
 *
 * - `throughput`: the persistent outbox's put (one fsync'd commit per message) and drain (next,
 *   publish QoS 1 over the real link, ack after the PUBACK) against the same work done raw:
 *   classic-level batches of the same sublevel, keys and JSON values with `sync: true`, and a bare
 *   mqtt.js client publishing the same messages;
 * - `fill`: queues messages into a (stopped) daemon's store through Outbox.put with a caller's
 *   batch, `batch` messages per commit;
 * - `hold`: opens a store and its outbox, forces a GC, and reports its memory: what an outbox of
 *   that many entries costs a process, split into V8 heap and the rest (LevelDB's caches);
 * - `verify`: the CPU part of a command, the ed25519 verification of a signed envelope as the
 *   daemon does it (node:crypto), and tweetnacl's for comparison (what it used before).
 *
 * Usage: node commands-worker.js <mode> <JSON options>; prints one JSON line with the results.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { connectAsync } from 'mqtt';
import { Outbox, createLink, startOutboxDrain, type OutboxMessage } from '../runtime/link/index.js';
import { silentLogger } from '../runtime/logs/index.js';
import { Store } from '../runtime/store/index.js';
import { canonicalBytes, generateKey, verify } from '../runtime/trust/index.js';
import { newCommand, signCommand } from '../runtime/commands/index.js';
import nacl from 'tweetnacl';
import { procMemory } from './proc.js';

/** The broker and the TLS files a worker connects with. */
export interface WorkerBroker {
  url: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Options of `throughput`. */
export interface ThroughputOptions {
  dir: string;
  messages: number;
  rounds: number;
  topic: string;
  payload: string;
  broker: WorkerBroker;
}

/** One timed run of one subject. */
export interface RateRun {
  messages: number;
  ms: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** What `throughput` prints. */
export interface ThroughputResult {
  messageBytes: number;
  put: { outbox: RateRun[]; raw: RateRun[] };
  drain: { outbox: RateRun[]; raw: RateRun[] };
}

/** Options of `fill`. */
export interface FillOptions {
  location: string;
  messages: number;
  batch: number;
  maxBytes: number;
  message: OutboxMessage;
}

/** Options of `hold`. */
export interface HoldOptions {
  location: string;
  maxBytes: number;
  settleMs: number;
}

/** What `hold` prints. */
export interface HoldResult {
  entries: number;
  rssAnonKiB: number;
  heapUsedKiB: number;
  /** The V8 heap's committed size; RssAnon minus it is mostly native memory (LevelDB's block cache and memtable). */
  heapTotalKiB: number;
  externalKiB: number;
}

const STORE_VERSION = 1;
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

function rateRun(latencies: number[], ms: number): RateRun {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { messages: latencies.length, ms: Math.round(ms), perSec: Math.round((latencies.length / ms) * 1000), p50Ms: round(quantile(sorted, 0.5)), p99Ms: round(quantile(sorted, 0.99)) };
}

const brokerConfig = (b: WorkerBroker) => ({ url: b.url, caFile: b.caFile, certFile: b.certFile, keyFile: b.keyFile, keepaliveSec: 60, connectTimeoutMs: 15_000, reconnectMinMs: 1_000, reconnectMaxMs: 120_000, sessionExpirySec: 604_800 });

async function throughput(o: ThroughputOptions): Promise<ThroughputResult> {
  const message: OutboxMessage = { class: 'result', topic: o.topic, payload: o.payload };
  const result: ThroughputResult = { messageBytes: Buffer.byteLength(o.topic) + Buffer.byteLength(o.payload), put: { outbox: [], raw: [] }, drain: { outbox: [], raw: [] } };
  const raw = await connectAsync(o.broker.url, { protocolVersion: 5, ca: readFileSync(o.broker.caFile), cert: readFileSync(o.broker.certFile), key: readFileSync(o.broker.keyFile), reconnectPeriod: 0, clientId: `bench-raw-${process.pid}` });
  const link = createLink({ broker: brokerConfig(o.broker), deviceId: `bench-outbox-${process.pid}`, log: silentLogger, version: 'bench' });
  const connected = new Promise<void>((resolve) => {
    const off = link.onStatus((s) => {
      if (s.state === 'connected') {
        off();
        resolve();
      }
    });
  });
  link.start();
  await connected;
  try {
    for (let round = 0; round < o.rounds; round++) {
      // Raw: the store's own layout (a JSON sublevel, the outbox's keys), one synchronous batch per message.
      const db = new ClassicLevel<string, unknown>(join(o.dir, `raw-${round}`));
      const sub = db.sublevel<string, unknown>('outbox', { valueEncoding: 'json' });
      await db.open();
      const rawPut = async (): Promise<void> => {
        const latencies: number[] = [];
        const started = performance.now();
        for (let i = 1; i <= o.messages; i++) {
          const t0 = performance.now();
          await db.batch([{ type: 'put', sublevel: sub, key: `0/${String(i).padStart(16, '0')}`, value: { topic: o.topic, payload: o.payload } }], { sync: true });
          latencies.push(performance.now() - t0);
        }
        result.put.raw.push(rateRun(latencies, performance.now() - started));
      };
      const store = await Store.open({ location: join(o.dir, `store-${round}`), version: STORE_VERSION });
      const outbox = await Outbox.open(store, { maxBytes: 1024 * 1024 * 1024, log: silentLogger });
      const outboxPut = async (): Promise<void> => {
        const latencies: number[] = [];
        const started = performance.now();
        for (let i = 0; i < o.messages; i++) {
          const t0 = performance.now();
          await outbox.put(message);
          latencies.push(performance.now() - t0);
        }
        result.put.outbox.push(rateRun(latencies, performance.now() - started));
      };
      // Alternate which goes first, so neither always meets the page cache or the other's load first.
      if (round % 2 === 0) await rawPut().then(outboxPut);
      else await outboxPut().then(rawPut);

      const rawDrain = async (): Promise<void> => {
        const latencies: number[] = [];
        const started = performance.now();
        for (;;) {
          const t0 = performance.now();
          const [first] = await sub.iterator({ limit: 1 }).all();
          if (first === undefined) break;
          const value = first[1] as { topic: string; payload: string };
          await raw.publishAsync(value.topic, value.payload, { qos: 1 });
          await db.batch([{ type: 'del', sublevel: sub, key: first[0] }], { sync: true });
          latencies.push(performance.now() - t0);
        }
        result.drain.raw.push(rateRun(latencies, performance.now() - started));
      };
      const outboxDrain = async (): Promise<void> => {
        // Per-message latency is not visible from outside the drain; the p50/p99 of a run are its mean.
        const started = performance.now();
        const drain = startOutboxDrain({ outbox, link, log: silentLogger });
        while (outbox.stats().entries > 0) await new Promise((resolve) => setTimeout(resolve, 5));
        const ms = performance.now() - started;
        await drain.stop();
        result.drain.outbox.push({ ...rateRun(Array.from({ length: o.messages }, () => ms / o.messages), ms) });
      };
      if (round % 2 === 0) await rawDrain().then(outboxDrain);
      else await outboxDrain().then(rawDrain);
      await store.close();
      await db.close();
    }
  } finally {
    await link.stop();
    await raw.endAsync();
  }
  return result;
}

async function fill(o: FillOptions): Promise<{ messages: number; ms: number; entries: number; bytes: number }> {
  const store = await Store.open({ location: o.location, version: STORE_VERSION });
  try {
    const outbox = await Outbox.open(store, { maxBytes: o.maxBytes, log: silentLogger });
    const started = performance.now();
    for (let done = 0; done < o.messages; ) {
      const batch = store.batch();
      const upTo = Math.min(o.messages, done + o.batch);
      for (; done < upTo; done++) await outbox.put(o.message, batch);
      await batch.commit();
    }
    const stats = outbox.stats();
    return { messages: o.messages, ms: Math.round(performance.now() - started), entries: stats.entries, bytes: stats.bytes };
  } finally {
    await store.close();
  }
}

async function hold(o: HoldOptions): Promise<HoldResult> {
  const store = await Store.open({ location: o.location, version: STORE_VERSION });
  try {
    const outbox = await Outbox.open(store, { maxBytes: o.maxBytes, log: silentLogger });
    const gc = (globalThis as { gc?: () => void }).gc;
    await new Promise((resolve) => setTimeout(resolve, o.settleMs));
    gc?.();
    const usage = process.memoryUsage();
    return { entries: outbox.stats().entries, rssAnonKiB: procMemory(process.pid).rssAnonKiB, heapUsedKiB: Math.round(usage.heapUsed / 1024), heapTotalKiB: Math.round(usage.heapTotal / 1024), externalKiB: Math.round(usage.external / 1024) };
  } finally {
    await store.close();
  }
}

function verifyCost(o: { runs: number; naclRuns: number }): { runs: number; p50Ms: number; canonicalP50Ms: number; envelopeBytes: number; naclRuns: number; naclP50Ms: number } {
  const key = generateKey();
  const envelope = signCommand(newCommand({ issuer: key.keyid, target: { device: 'gw-bench-1' }, type: 'diagnostics', validitySec: 600 }), key);
  const text = JSON.stringify(envelope);
  const signature = envelope.signatures[0]!;
  const verifyMs: number[] = [];
  const canonicalMs: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    const t0 = performance.now();
    const bytes = canonicalBytes(JSON.parse(text).signed);
    const t1 = performance.now();
    if (!verify(key.key.keyval.public, bytes, signature.sig)) throw new Error('the benchmark envelope did not verify');
    canonicalMs.push(t1 - t0);
    verifyMs.push(performance.now() - t1);
  }
  // Fewer runs: each takes ~85 ms under --jitless.
  const naclMs: number[] = [];
  const bytes = canonicalBytes(JSON.parse(text).signed);
  const sig = Buffer.from(signature.sig, 'hex');
  for (let i = 0; i < o.naclRuns; i++) {
    const t0 = performance.now();
    if (!nacl.sign.detached.verify(bytes, sig, key.publicKey)) throw new Error('the benchmark envelope did not verify (tweetnacl)');
    naclMs.push(performance.now() - t0);
  }
  const p50 = (xs: number[]) => Math.round(quantile([...xs].sort((a, b) => a - b), 0.5) * 1000) / 1000;
  return { runs: o.runs, p50Ms: p50(verifyMs), canonicalP50Ms: p50(canonicalMs), envelopeBytes: Buffer.byteLength(text), naclRuns: o.naclRuns, naclP50Ms: p50(naclMs) };
}

const [mode, json] = process.argv.slice(2);
const options = JSON.parse(json ?? '{}') as unknown;
const modes: Record<string, (o: never) => unknown> = { throughput, fill, hold, verify: verifyCost };
const run = mode === undefined ? undefined : modes[mode];
if (run === undefined) throw new Error(`usage: commands-worker.js ${Object.keys(modes).join('|')} <JSON options>`);
process.stdout.write(`${JSON.stringify(await run(options as never))}\n`);
process.exit(0);
