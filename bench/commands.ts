/**
 * Remote commands (issue 19), side by side in one run on one broker:
 *
 * - Round trip, publish → result received, one command at a time: the real daemon (dist, the
 *   unit's NODE_OPTIONS, a `commands` section, issuers published by `outpostctl commands issuers
 *   add` and trusted through `outpost update check`) answering `diagnostics`, against a bare
 *   mqtt.js echo client (bench/echo-client.ts) that republishes each message QoS 1 to a reply
 *   topic. Both are timed from the same sender, alternating, `rounds` runs of `commands` each after
 *   a warm-up. Then 10 at a time for throughput, the daemon's fsyncs per command
 *   counted with `strace -f -c` over separate commands, and the ed25519 verification's cost under
 *   the daemon's flags, to see where the time goes.
 * - The persistent outbox (bench/commands-worker.ts): put and drain rates against raw classic-level
 *   synchronous batches of the same bytes (and a bare mqtt.js publisher for the drain).
 * - Memory with a full outbox: the daemon's RssAnon idle with an empty outbox and with 100k
 *   messages queued (both offline, so nothing drains), its peak while it counts them at start and
 *   while it drains them to the broker, and a bare process holding an Outbox of either size (V8
 *   heap and the rest, after a forced GC).
 */
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { connectAsync, type MqttClient } from 'mqtt';
import { newCommand, signCommand } from '../runtime/commands/index.js';
import { readPrivateKeyFile, type PrivateKey } from '../runtime/trust/index.js';
import { packageRoot } from '../runtime/version.js';
import { deviceWorld, outpostBin, type DeviceWorld } from '../scripts/world/device.js';
import { freePort, startMosquitto } from '../scripts/world/mosquitto.js';
import { createOtaWorld, type OtaWorld } from '../scripts/world/ota-world.js';
import { createPki, issueClientCert, type CertPair } from '../scripts/world/pki.js';
import { until } from '../scripts/world/until.js';
import type { FillOptions, HoldOptions, HoldResult, RateRun, ThroughputOptions, ThroughputResult } from './commands-worker.js';
import { procMemory, type ProcMemory } from './proc.js';
import { sampleMemory } from './sampler.js';
import { daemonNodeOptions } from './startup-memory.js';

/** Latency figures of one run of sequential round trips, in ms. */
export interface LatencyRun {
  subject: 'echo' | 'durable-echo' | 'outpost';
  round: number;
  commands: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** Commands without a reply after STALL_MS (left out of the figures above); how many of them a following message woke. */
  stalls: number;
  recovered: number;
}

/** Everything commands.json records. */
export interface CommandsResult {
  nodeOptions: string;
  roundTrip: {
    commands: number;
    rounds: number;
    warmup: number;
    envelopeBytes: number;
    resultBytes: number;
    runs: LatencyRun[];
    /** Medians over the rounds. */
    echo: { p50Ms: number; p99Ms: number };
    /** The echo making the commits the semantics require (bench/echo-client.ts `durableDir`), measured beside the bare one. */
    durableEcho: { p50Ms: number; p99Ms: number };
    outpost: { p50Ms: number; p99Ms: number };
    ratio: { p50: number; p99: number };
    /** durable echo ÷ echo: what the durability alone costs against the goal's baseline. */
    durableEchoRatio: { p50: number; p99: number };
    /** Throughput with `window` commands in flight at a time. */
    pipelined: { commands: number; window: number; echoPerSec: number; outpostPerSec: number; outpostStalls: number };
    /** One run of the echo on a second, stock mosquitto, the clients with mqtt.js's TCP defaults (Nagle on). */
    stockEcho: LatencyRun;
    /** fsync-family system calls of the daemon (all threads) over `commands` commands, and over as long idle. */
    fsyncs: { commands: number; calls: Record<string, number>; perCommand: number; idleCalls: number; idleMs: number } | null;
    /** ed25519 verification (node:crypto, as the daemon; tweetnacl for comparison) and canonical JSON of one envelope, under the daemon's flags. */
    verify: { runs: number; p50Ms: number; canonicalP50Ms: number; naclRuns: number; naclP50Ms: number };
  };
  outbox: ThroughputResult & { medians: { putOutbox: number; putRaw: number; drainOutbox: number; drainRaw: number } };
  memory: {
    messages: number;
    messageBytes: number;
    idleSec: number;
    fill: { messages: number; ms: number; entries: number; bytes: number };
    daemon: {
      empty: DaemonPhase;
      queued: DaemonPhase;
      /** `perSec` from the first message to the last; `buckets` the messages of each 5 s from the first. */
      draining: DaemonPhase & { drainSec: number; received: number; perSec: number; buckets: number[] };
    };
    hold: { empty: HoldResult; queued: HoldResult };
  };
}

/** One boot of the memory daemon: RssAnon at the end of the phase, peaks during start and after. */
export interface DaemonPhase {
  readyMs: number;
  end: ProcMemory;
  startPeakRssAnonKiB: number;
  peakRssAnonKiB: number;
}

const root = packageRoot() ?? process.cwd();
const workerPath = join(root, 'dist', 'bench', 'commands-worker.js');
const echoPath = join(root, 'dist', 'bench', 'echo-client.js');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
const ms3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Runs a commands-worker mode with the daemon's flags; resolves with its JSON line. */
async function worker<T>(mode: string, options: ThroughputOptions | FillOptions | HoldOptions | { runs: number; naclRuns: number }): Promise<T> {
  const r = await execa('node', ['--expose-gc', workerPath, mode, JSON.stringify(options)], { env: { NODE_OPTIONS: daemonNodeOptions }, reject: false });
  if (r.exitCode !== 0) throw new Error(`commands-worker ${mode} failed (${r.exitCode}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as T;
}

/** A daemon started the way the unit starts it, its last log lines kept for errors. */
interface Daemon {
  child: ResultPromise<{ reject: false; buffer: false }>;
  tail: string[];
  startedAt: number;
}

function startDaemon(world: DeviceWorld): Daemon {
  const env: Record<string, string | undefined> = { ...process.env, OUTPOST_CONFIG: world.configPath, NODE_OPTIONS: daemonNodeOptions };
  for (const key of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete env[key];
  const startedAt = performance.now();
  const child = execa('node', [outpostBin(), 'run'], { env, extendEnv: false, reject: false, buffer: false });
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
  };
  if (child.stdout) createInterface({ input: child.stdout }).on('line', keep);
  if (child.stderr) createInterface({ input: child.stderr }).on('line', keep);
  return { child, tail, startedAt };
}

const exited = (child: { exitCode: number | null; signalCode: string | null }): boolean => child.exitCode !== null || child.signalCode !== null;

/** Resolves once the daemon's API answers; the ms since spawn. */
async function daemonReady(world: DeviceWorld, d: Daemon): Promise<number> {
  await until('the daemon API', async () => (exited(d.child) ? true : (await world.cli(['update', 'status', '--json'])).exitCode === 0 ? true : undefined), 60_000);
  if (exited(d.child)) throw new Error(`the daemon exited during start:\n${d.tail.join('\n')}`);
  return Math.round(performance.now() - d.startedAt);
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (!exited(d.child)) d.child.kill('SIGTERM');
  const timer = setTimeout(() => d.child.kill('SIGKILL'), 15_000);
  await d.child;
  clearTimeout(timer);
}

/** The sender's side: one client, replies matched to their request by command id. */
interface Sender {
  client: MqttClient;
  /** Resolves with the reply's payload. */
  reply(id: string): Promise<string>;
}

async function startSender(url: string, caFile: string, pair: CertPair, topics: string[], noDelay: boolean): Promise<Sender> {
  const client = await connectAsync(url, { protocolVersion: 5, ca: readFileSync(caFile), cert: readFileSync(pair.cert), key: readFileSync(pair.key), reconnectPeriod: 0, clientId: `bench-sender-${process.pid}` });
  if (noDelay) (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  const waiters = new Map<string, (payload: string) => void>();
  const early = new Map<string, string>();
  client.on('message', (_topic, payload) => {
    const text = payload.toString('utf8');
    let id: unknown;
    try {
      const doc = JSON.parse(text) as { id?: unknown; signed?: { id?: unknown } };
      // A result carries the command's id; the echo sends back the envelope itself.
      id = doc.signed?.id ?? doc.id;
    } catch {
      return;
    }
    if (typeof id !== 'string') return;
    const waiter = waiters.get(id);
    if (waiter) {
      waiters.delete(id);
      waiter(text);
    } else early.set(id, text);
  });
  await client.subscribeAsync(topics, { qos: 1 });
  return {
    client,
    reply: (id) =>
      new Promise((resolve, reject) => {
        const got = early.get(id);
        if (got !== undefined) {
          early.delete(id);
          resolve(got);
          return;
        }
        const timer = setTimeout(() => {
          waiters.delete(id);
          reject(new Error(`no reply to command ${id} within 60 s`));
        }, 60_000);
        waiters.set(id, (payload) => {
          clearTimeout(timer);
          resolve(payload);
        });
      }),
  };
}

interface Envelope {
  id: string;
  text: string;
}

function envelopes(key: PrivateKey, deviceId: string, count: number): Envelope[] {
  return Array.from({ length: count }, () => {
    const envelope = signCommand(newCommand({ issuer: key.keyid, target: { device: deviceId }, type: 'diagnostics', validitySec: 1800 }), key);
    return { id: envelope.signed.id, text: JSON.stringify(envelope) };
  });
}

/** Sends each envelope and waits for its reply before the next; returns each round trip in ms and the replies. */
/** No reply after this long: the command is counted as stalled and another message is sent after it. */
const STALL_MS = 5_000;

/**
 * Publishes `e` and waits for its reply. Without one after STALL_MS the command counts as stalled
 * and a second message (`nudge()`) follows it; `recovered` says whether its reply came after that:
 * the daemon's command inbox can miss a message stored while its worker's last read was in flight,
 * until the next message wakes it (a runtime problem, reported; the bench only counts it).
 */
async function send(sender: Sender, topic: string, e: Envelope, nudge: () => Envelope): Promise<{ reply: string | undefined; ms: number; stalled: boolean }> {
  const started = performance.now();
  const reply = sender.reply(e.id);
  sender.client.publish(topic, e.text, { qos: 1 });
  const early = await Promise.race([reply, sleep(STALL_MS).then(() => undefined)]);
  if (early !== undefined) return { reply: early, ms: performance.now() - started, stalled: false };
  const n = nudge();
  const nudged = sender.reply(n.id);
  sender.client.publish(topic, n.text, { qos: 1 });
  const [late] = await Promise.all([reply.catch(() => undefined), nudged.catch(() => undefined)]);
  return { reply: late, ms: performance.now() - started, stalled: true };
}

/** One run's round trips (stalled ones left out of `ms`), replies, and stalls. */
interface Sequential {
  ms: number[];
  replies: string[];
  stalls: { id: string; recovered: boolean }[];
}

/** Sends each envelope and waits for its reply before the next. */
async function sequential(sender: Sender, topic: string, list: Envelope[], nudge: () => Envelope): Promise<Sequential> {
  const out: Sequential = { ms: [], replies: [], stalls: [] };
  for (const e of list) {
    const r = await send(sender, topic, e, nudge);
    if (r.reply !== undefined) out.replies.push(r.reply);
    if (r.stalled) out.stalls.push({ id: e.id, recovered: r.reply !== undefined });
    else out.ms.push(r.ms);
  }
  return out;
}

/** Keeps `window` commands in flight until all are answered; the rate from the first publish to the last reply. */
async function pipelined(sender: Sender, topic: string, list: Envelope[], window: number, nudge: () => Envelope): Promise<{ perSec: number; replies: string[]; stalls: number }> {
  const started = performance.now();
  const replies: string[] = [];
  let stalls = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < list.length) {
      const r = await send(sender, topic, list[next++]!, nudge);
      if (r.reply !== undefined) replies.push(r.reply);
      if (r.stalled) stalls += 1;
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return { perSec: Math.round((list.length / (performance.now() - started)) * 1000), replies, stalls };
}

function checkResults(replies: string[], what: string): void {
  const bad = replies.map((r) => JSON.parse(r) as { outcome?: string; reason?: string }).filter((r) => r.outcome !== 'succeeded');
  if (bad.length > 0) throw new Error(`${bad.length} of ${replies.length} ${what} did not succeed, e.g. ${JSON.stringify(bad[0])}`);
}

function latencyRun(subject: LatencyRun['subject'], round: number, run: Sequential): LatencyRun {
  const { ms } = run;
  const sorted = [...ms].sort((a, b) => a - b);
  return { subject, round, commands: ms.length + run.stalls.length, p50Ms: ms3(quantile(sorted, 0.5)), p99Ms: ms3(quantile(sorted, 0.99)), meanMs: ms3(ms.reduce((a, b) => a + b, 0) / ms.length), stalls: run.stalls.length, recovered: run.stalls.filter((x) => x.recovered).length };
}

async function straceAvailable(): Promise<boolean> {
  return (await execa('strace', ['-V'], { reject: false })).exitCode === 0;
}

/** Counts fsync-family calls of `pid` and all its threads while `during` runs (strace -f -c). */
async function countFsyncs(pid: number, out: string, during: () => Promise<void>): Promise<Record<string, number>> {
  const strace = execa('strace', ['-f', '-c', '-e', 'trace=fsync,fdatasync,sync_file_range,syncfs,msync', '-o', out, '-p', String(pid)], { reject: false, buffer: false, stderr: 'pipe' });
  let attached = false;
  if (strace.stderr) createInterface({ input: strace.stderr }).on('line', (line) => (attached ||= line.includes('attached')));
  await until('strace to attach', () => (attached ? true : exited(strace) ? true : undefined), 10_000);
  await sleep(200);
  try {
    await during();
  } finally {
    strace.kill('SIGINT');
    await strace;
  }
  const calls: Record<string, number> = {};
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const cols = line.trim().split(/\s+/);
    const name = cols[cols.length - 1] ?? '';
    // "% time  seconds  usecs/call  calls  [errors]  syscall"
    if (/^(fsync|fdatasync|sync_file_range|syncfs|msync)$/.test(name) && /^\d+$/.test(cols[3] ?? '')) calls[name] = Number(cols[3]);
  }
  return calls;
}

/** Boots the daemon, samples it until `holdMs` after ready, reads its memory, stops it. */
async function daemonPhase(world: DeviceWorld, holdMs: number): Promise<DaemonPhase> {
  const d = startDaemon(world);
  let phase = 'start';
  const sampler = sampleMemory(d.child.pid ?? 0, () => phase);
  try {
    const readyMs = await daemonReady(world, d);
    phase = 'after';
    await sleep(holdMs);
    const end = procMemory(d.child.pid ?? 0);
    const peaks = sampler.stop();
    return { readyMs, end, startPeakRssAnonKiB: peaks.find((p) => p.phase === 'start')?.peakRssAnonKiB ?? 0, peakRssAnonKiB: Math.max(...peaks.map((p) => p.peakRssAnonKiB)) };
  } finally {
    sampler.stop();
    await stopDaemon(d);
  }
}

/** Runs the benchmark in `dir`. `idleSec` is how long each memory phase idles before its reading. */
export async function benchCommands(dir: string, idleSec: number, log: (line: string) => void): Promise<CommandsResult> {
  const commands = Number(process.env.OUTPOST_BENCH_COMMANDS ?? 1000);
  const rounds = 3;
  const warmup = 50;
  const pipelinedCommands = 200;
  const window = 10;
  const fsyncCommands = 200;
  const queuedMessages = 100_000;
  const drainSec = 30;
  const deviceId = 'gw-bench-1';
  const memoryDeviceId = 'gw-bench-2';

  let ota: OtaWorld | undefined;
  const cleanups: (() => Promise<void> | void)[] = [];
  try {
    ota = await createOtaWorld({ versions: [1] });
    const w = ota;
    const pki = await createPki({ dir: join(dir, 'pki'), deviceId });
    const [operatorCert, echoCert, outboxCert, memoryCert] = await Promise.all([issueClientCert(pki, 'operator'), issueClientCert(pki, 'bench-echo'), issueClientCert(pki, 'gw-bench-outbox'), issueClientCert(pki, memoryDeviceId)]);
    mkdirSync(join(dir, 'broker'), { recursive: true });
    // TCP_NODELAY on the broker's sockets and the bench's own clients: with Nagle on both ends every
    // hop that writes twice in a row waits for a delayed ACK (~40 ms on Linux), which would swamp
    // what is measured. The stock configuration gets its own echo row, on a second broker.
    const broker = await startMosquitto({ dir: join(dir, 'broker'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key, extraConfig: ['set_tcp_nodelay true'] });
    cleanups.push(() => broker.stop());
    mkdirSync(join(dir, 'broker-stock'), { recursive: true });
    const stockBroker = await startMosquitto({ dir: join(dir, 'broker-stock'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
    cleanups.push(() => stockBroker.stop());

    // Who may send commands: published in the signed targets by the real outpostctl.
    const signing = ['--targets-key', join(w.keysDir, 'targets.key'), '--snapshot-key', join(w.keysDir, 'snapshot.key'), '--timestamp-key', join(w.keysDir, 'timestamp.key')];
    await w.ctl(['keys', 'generate', '--role', 'commands', '--name', 'operator', '--out', w.keysDir]);
    await w.ctl(['commands', 'issuers', 'add', '--repo', w.tufDir, '--key', join(w.keysDir, 'operator.pub'), '--type', 'diagnostics', '--max-validity', '1h', ...signing]);
    const key = await readPrivateKeyFile(join(w.keysDir, 'operator.key'));

    // The daemon under test, with commands on; its first update check trusts the issuers.
    const device = deviceWorld(deviceId);
    cleanups.push(() => device.cleanup());
    device.writeConfig({
      broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key },
      update: w.updateConfig(),
      commands: {},
    });
    const daemon = startDaemon(device);
    cleanups.push(() => stopDaemon(daemon));
    await daemonReady(device, daemon);
    const check = await device.cli(['update', 'check']);
    if (check.exitCode !== 0) throw new Error(`outpost update check failed: ${check.stderr}`);

    // The baseline, on the same broker with the same flags.
    const echoIn = 'bench/echo/in';
    const echoOut = 'bench/echo/out';
    const durableIn = 'bench/durable-echo/in';
    const durableOut = 'bench/durable-echo/out';
    const durableDir = join(dir, 'durable-echo');
    const startEcho = async (url: string, noDelay: boolean, durable = false): Promise<void> => {
      const topics = durable ? { inTopic: durableIn, outTopic: durableOut, durableDir } : { inTopic: echoIn, outTopic: echoOut };
      const echo = execa('node', [echoPath, JSON.stringify({ url, caFile: pki.ca.cert, certFile: echoCert.cert, keyFile: echoCert.key, noDelay, ...topics })], { env: { NODE_OPTIONS: daemonNodeOptions }, reject: false, buffer: false });
      cleanups.push(async () => {
        echo.kill('SIGTERM');
        await echo;
      });
      await new Promise<void>((resolve, reject) => {
        if (!echo.stdout) return reject(new Error('echo client has no stdout'));
        createInterface({ input: echo.stdout }).once('line', () => resolve());
        void echo.then((r) => reject(new Error(`echo client exited (${r.exitCode}): ${String(r.stderr ?? '')}`)));
      });
    };
    await startEcho(broker.url, true);
    await startEcho(broker.url, true, true);
    await startEcho(stockBroker.url, false);

    const cmdTopic = `outpost/v1/${deviceId}/cmd`;
    const resultTopic = `outpost/v1/${deviceId}/cmd/result`;
    const sender = await startSender(broker.url, pki.ca.cert, operatorCert, [resultTopic, echoOut, durableOut], true);
    cleanups.push(() => sender.client.endAsync(true));
    const stockSender = await startSender(stockBroker.url, pki.ca.cert, operatorCert, [echoOut], false);
    cleanups.push(() => stockSender.client.endAsync(true));
    // The daemon subscribes once connected: probe until a command comes back.
    const probe = await until('the daemon to answer a command', async () => {
      const [e] = envelopes(key, deviceId, 1);
      sender.client.publish(cmdTopic, e!.text, { qos: 1 });
      return Promise.race([sender.reply(e!.id).catch(() => undefined), sleep(2000).then(() => undefined)]);
    }, 60_000);
    checkResults([probe], 'probe commands');

    const withTail = async <T>(what: Promise<T>): Promise<T> =>
      what.catch((err: unknown) => {
        throw new Error(`${err instanceof Error ? err.message : String(err)}; the daemon ${exited(daemon.child) ? `exited (${daemon.child.exitCode ?? daemon.child.signalCode})` : 'runs'}, its last lines:\n${daemon.tail.join('\n')}`);
      });
    log(`commands: round trips, ${rounds} × ${commands} each, echo, durable echo and outpost in turn`);
    const runs: LatencyRun[] = [];
    let resultText = probe;
    let envelopeBytes = 0;
    const nudge = (): Envelope => envelopes(key, deviceId, 1)[0]!;
    for (let round = 0; round < rounds; round++) {
      const subjects: LatencyRun['subject'][] = ['echo', 'durable-echo', 'outpost'];
      const order = [...subjects.slice(round % 3), ...subjects.slice(0, round % 3)];
      for (const subject of order) {
        const list = envelopes(key, deviceId, warmup + commands);
        envelopeBytes = Buffer.byteLength(list[0]!.text);
        const topic = { echo: echoIn, 'durable-echo': durableIn, outpost: cmdTopic }[subject];
        const warm = await withTail(sequential(sender, topic, list.slice(0, warmup), nudge));
        const timed = await withTail(sequential(sender, topic, list.slice(warmup), nudge));
        if (subject === 'outpost') {
          checkResults([...warm.replies, ...timed.replies], 'commands');
          resultText = timed.replies[timed.replies.length - 1] ?? resultText;
        }
        const run = latencyRun(subject, round, timed);
        runs.push(run);
        log(`  ${subject} round ${round + 1}: p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, stalled ${run.stalls} (woken by the next message: ${run.recovered})`);
      }
    }
    const summary = (subject: LatencyRun['subject']) => ({ p50Ms: ms3(median(runs.filter((r) => r.subject === subject).map((r) => r.p50Ms))), p99Ms: ms3(median(runs.filter((r) => r.subject === subject).map((r) => r.p99Ms))) });
    const echoSummary = summary('echo');
    const durableSummary = summary('durable-echo');
    const outpostSummary = summary('outpost');
    const ratio = (a: { p50Ms: number; p99Ms: number }, b: { p50Ms: number; p99Ms: number }) => ({ p50: Math.round((a.p50Ms / b.p50Ms) * 100) / 100, p99: Math.round((a.p99Ms / b.p99Ms) * 100) / 100 });

    log('commands: the echo on a stock mosquitto, Nagle on');
    const stockList = envelopes(key, deviceId, warmup + commands);
    await sequential(stockSender, echoIn, stockList.slice(0, warmup), nudge);
    const stockEcho = latencyRun('echo', 0, await sequential(stockSender, echoIn, stockList.slice(warmup), nudge));
    log(`  echo, stock TCP: p50 ${stockEcho.p50Ms} ms, p99 ${stockEcho.p99Ms} ms`);

    log(`commands: ${pipelinedCommands} with ${window} in flight`);
    const echoPipelined = await pipelined(sender, echoIn, envelopes(key, deviceId, pipelinedCommands), window, nudge);
    const outpostPipelined = await pipelined(sender, cmdTopic, envelopes(key, deviceId, pipelinedCommands), window, nudge);
    checkResults(outpostPipelined.replies, 'pipelined commands');

    let fsyncs: CommandsResult['roundTrip']['fsyncs'] = null;
    if (await straceAvailable()) {
      log(`commands: fsyncs over ${fsyncCommands} commands (strace -f -c)`);
      const pid = daemon.child.pid ?? 0;
      const list = envelopes(key, deviceId, fsyncCommands);
      let commandsMs = 0;
      let fsyncStalls = 0;
      const calls = await countFsyncs(pid, join(dir, 'strace-commands.txt'), async () => {
        const started = performance.now();
        const { replies, stalls } = await sequential(sender, cmdTopic, list, nudge);
        fsyncStalls = stalls.length;
        commandsMs = performance.now() - started;
        checkResults(replies, 'strace commands');
        // The last result's ack (after its PUBACK) may still be on its way.
        await sleep(500);
      });
      const idleMs = Math.round(commandsMs);
      const idle = await countFsyncs(pid, join(dir, 'strace-idle.txt'), () => sleep(idleMs));
      const total = Object.values(calls).reduce((a, b) => a + b, 0);
      // A stalled command brought a nudge: one more command answered in the window.
      const answered = fsyncCommands + fsyncStalls;
      fsyncs = { commands: answered, calls, perCommand: Math.round((total / answered) * 100) / 100, idleCalls: Object.values(idle).reduce((a, b) => a + b, 0), idleMs };
    }
    await stopDaemon(daemon);

    const verify = await worker<{ runs: number; p50Ms: number; canonicalP50Ms: number; naclRuns: number; naclP50Ms: number }>('verify', { runs: 200, naclRuns: 20 });

    log('commands: outbox put and drain against raw classic-level and mqtt.js');
    const workerBroker = { url: broker.url, caFile: pki.ca.cert, certFile: outboxCert.cert, keyFile: outboxCert.key };
    mkdirSync(join(dir, 'outbox'));
    const tp = await worker<ThroughputResult>('throughput', { dir: join(dir, 'outbox'), messages: 2000, rounds: 3, topic: 'outpost/v1/gw-bench-outbox/cmd/result', payload: resultText, broker: workerBroker });
    const rate = (xs: RateRun[]) => median(xs.map((x) => x.perSec));
    const outbox = { ...tp, medians: { putOutbox: rate(tp.put.outbox), putRaw: rate(tp.put.raw), drainOutbox: rate(tp.drain.outbox), drainRaw: rate(tp.drain.raw) } };

    log(`commands: daemon memory, empty outbox vs ${queuedMessages} queued (${idleSec} s each), then draining (${drainSec} s)`);
    const memDevice = deviceWorld(memoryDeviceId);
    cleanups.push(() => memDevice.cleanup());
    const maxBytes = 512 * 1024 * 1024;
    const offline = `mqtts://127.0.0.1:${await freePort()}`;
    const memConfig = (url: string) => ({ broker: { url, caFile: pki.ca.cert, certFile: memoryCert.cert, keyFile: memoryCert.key }, update: w.updateConfig(), commands: {}, outbox: { maxBytes } });
    memDevice.writeConfig(memConfig(offline));
    const empty = await daemonPhase(memDevice, idleSec * 1000);
    const location = join(memDevice.stateDir, 'store');
    const memTopic = `outpost/v1/${memoryDeviceId}/cmd/result`;
    const holdEmpty = await worker<HoldResult>('hold', { location, maxBytes, settleMs: 2000 });
    const fill = await worker<CommandsResult['memory']['fill']>('fill', { location, messages: queuedMessages, batch: 1000, maxBytes, message: { class: 'result', topic: memTopic, payload: resultText } });
    if (fill.entries !== queuedMessages) throw new Error(`the outbox holds ${fill.entries} entries, not ${queuedMessages}`);
    const holdQueued = await worker<HoldResult>('hold', { location, maxBytes, settleMs: 2000 });
    const queued = await daemonPhase(memDevice, idleSec * 1000);

    memDevice.writeConfig(memConfig(broker.url));
    const watcher = await connectAsync(broker.url, { protocolVersion: 5, ca: readFileSync(pki.ca.cert), cert: readFileSync(operatorCert.cert), key: readFileSync(operatorCert.key), reconnectPeriod: 0, clientId: `bench-watch-${process.pid}` });
    cleanups.push(() => watcher.endAsync(true));
    let received = 0;
    let firstAt = 0;
    let lastAt = 0;
    const buckets: number[] = [];
    watcher.on('message', () => {
      const now = performance.now();
      if (received === 0) firstAt = now;
      lastAt = now;
      received += 1;
      const bucket = Math.floor((now - firstAt) / 5000);
      buckets[bucket] = (buckets[bucket] ?? 0) + 1;
    });
    await watcher.subscribeAsync(memTopic, { qos: 1 });
    const draining = await daemonPhase(memDevice, drainSec * 1000);
    const perSec = received > 1 ? Math.round(((received - 1) / (lastAt - firstAt)) * 1000) : 0;

    return {
      nodeOptions: daemonNodeOptions,
      roundTrip: {
        commands,
        rounds,
        warmup,
        envelopeBytes,
        resultBytes: Buffer.byteLength(resultText),
        runs,
        echo: echoSummary,
        durableEcho: durableSummary,
        outpost: outpostSummary,
        ratio: ratio(outpostSummary, echoSummary),
        durableEchoRatio: ratio(durableSummary, echoSummary),
        stockEcho,
        pipelined: { commands: pipelinedCommands, window, echoPerSec: echoPipelined.perSec, outpostPerSec: outpostPipelined.perSec, outpostStalls: outpostPipelined.stalls },
        fsyncs,
        verify,
      },
      outbox,
      memory: {
        messages: queuedMessages,
        messageBytes: Buffer.byteLength(memTopic) + Buffer.byteLength(resultText),
        idleSec,
        fill,
        daemon: { empty, queued, draining: { ...draining, drainSec, received, perSec, buckets: Array.from(buckets, (n) => n ?? 0) } },
        hold: { empty: holdEmpty, queued: holdQueued },
      },
    };
  } finally {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
    await ota?.close();
  }
}

const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
const msf = (ms: number): string => `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`;
const perSec = (n: number): string => `${n.toLocaleString('en-US')}/s`;

/** The README section's body: round trip, outbox rates, memory with a full outbox. */
export function commandsTables(r: CommandsResult, header: string): string {
  const rt = r.roundTrip;
  const byRound = (subject: LatencyRun['subject']) => rt.runs.filter((x) => x.subject === subject).map((x) => `${x.p50Ms.toFixed(2)}/${x.p99Ms.toFixed(1)}`).join(', ');
  const f = rt.fsyncs;
  const fsyncText = f === null
    ? 'strace was not available, so fsyncs were not counted.'
    : `The daemon made ${f.perCommand} fsync-family calls per command (${Object.entries(f.calls).map(([k, v]) => `${k} ${v}`).join(', ')} over ${f.commands} commands; ${f.idleCalls} in as long idle).`;
  const o = r.outbox;
  const m = r.memory;
  const d = m.daemon;
  const p50 = (xs: RateRun[]) => median(xs.map((x) => x.p50Ms));
  return [
    `${header} Daemon and baselines with \`NODE_OPTIONS='${r.nodeOptions}'\`.`,
    '',
    `Round trip, publish → reply received, one at a time; median over ${rt.rounds} runs of ${rt.commands} (after ${rt.warmup} warm-up each), envelope ${rt.envelopeBytes} B, result ${rt.resultBytes} B:`,
    '',
    `| subject | p50 | p99 | ${rt.pipelined.commands} with ${rt.pipelined.window} in flight | p50/p99 of each run (ms) |`,
    '|---|---|---|---|---|',
    `| mqtt.js echo client (republishes QoS 1) | ${msf(rt.echo.p50Ms)} | ${msf(rt.echo.p99Ms)} | ${perSec(rt.pipelined.echoPerSec)} | ${byRound('echo')} |`,
    `| durable echo: that echo with the commits the semantics require (2 fsync'd before the reply leaves, 1 not after) | ${msf(rt.durableEcho.p50Ms)} | ${msf(rt.durableEcho.p99Ms)} | | ${byRound('durable-echo')} |`,
    `| outpost run, \`diagnostics\` command | ${msf(rt.outpost.p50Ms)} | ${msf(rt.outpost.p99Ms)} | ${perSec(rt.pipelined.outpostPerSec)} | ${byRound('outpost')} |`,
    `| for scale: the echo on a stock mosquitto, TCP defaults (Nagle on), one run | ${msf(rt.stockEcho.p50Ms)} | ${msf(rt.stockEcho.p99Ms)} | | ${rt.stockEcho.p50Ms.toFixed(2)}/${rt.stockEcho.p99Ms.toFixed(1)} |`,
    `| outpost ÷ echo (goal ≤ 1.2) | **${rt.ratio.p50.toFixed(2)}** | **${rt.ratio.p99.toFixed(2)}** | ${(rt.pipelined.outpostPerSec / rt.pipelined.echoPerSec).toFixed(2)} | |`,
    `| durable echo ÷ echo | **${rt.durableEchoRatio.p50.toFixed(2)}** | **${rt.durableEchoRatio.p99.toFixed(2)}** | | |`,
    `| outpost ÷ durable echo | ${(rt.outpost.p50Ms / rt.durableEcho.p50Ms).toFixed(2)} | ${(rt.outpost.p99Ms / rt.durableEcho.p99Ms).toFixed(2)} | | |`,
    '',
    `Stalled commands (no reply within ${STALL_MS / 1000} s, left out of p50/p99, answered once a further message arrived): outpost ${rt.runs.filter((x) => x.subject === 'outpost').map((x) => `${x.stalls} of ${x.commands} (${x.recovered} woken)`).join(', ')}; ${rt.pipelined.outpostStalls} of ${rt.pipelined.commands} with ${rt.pipelined.window} in flight; echo ${rt.runs.filter((x) => x.subject === 'echo').reduce((n, x) => n + x.stalls, 0)}; durable echo ${rt.runs.filter((x) => x.subject === 'durable-echo').reduce((n, x) => n + x.stalls, 0)}.`,
    '',
    `${fsyncText} One ed25519 verification with these flags takes ${msf(rt.verify.p50Ms)} as the daemon does it (node:crypto, p50 of ${rt.verify.runs}; tweetnacl, which it used before: ${msf(rt.verify.naclP50Ms)}, p50 of ${rt.verify.naclRuns}), the canonical JSON of the envelope ${msf(rt.verify.canonicalP50Ms)}.`,
    '',
    `Outbox, ${o.put.outbox[0]?.messages ?? 0} messages of ${o.messageBytes} B per run, median of ${o.put.outbox.length} runs (each run's p50 per message in brackets):`,
    '',
    '| operation | outpost `Outbox` | raw baseline | outbox ÷ raw |',
    '|---|---|---|---|',
    `| put: one fsync'd commit per message | ${perSec(o.medians.putOutbox)} (${msf(p50(o.put.outbox))}) | ${perSec(o.medians.putRaw)} (${msf(p50(o.put.raw))}): classic-level \`batch\`, \`sync: true\`, same sublevel, keys and JSON | ${(o.medians.putOutbox / o.medians.putRaw).toFixed(2)} |`,
    `| drain: next, publish QoS 1 over the link, ack after PUBACK | ${perSec(o.medians.drainOutbox)} | ${perSec(o.medians.drainRaw)} (${msf(p50(o.drain.raw))}): first key, mqtt.js \`publishAsync\` QoS 1, \`sync: true\` del | ${(o.medians.drainOutbox / o.medians.drainRaw).toFixed(2)} |`,
    '',
    `Memory with ${m.messages.toLocaleString('en-US')} messages (${m.messageBytes} B each, ${(m.fill.bytes / 1e6).toFixed(0)} MB) queued, queued in ${(m.fill.ms / 1000).toFixed(1)} s by batches of 1,000 (offline: nothing drains; readings after ${m.idleSec} s):`,
    '',
    '| process | outbox empty | 100k queued | difference (goal ≤ 5 MiB) | peak while starting (empty → queued) |',
    '|---|---|---|---|---|',
    `| outpost run with commands, RssAnon | ${mib(d.empty.end.rssAnonKiB)} | ${mib(d.queued.end.rssAnonKiB)} | **${mib(d.queued.end.rssAnonKiB - d.empty.end.rssAnonKiB)}** | ${mib(d.empty.startPeakRssAnonKiB)} → ${mib(d.queued.startPeakRssAnonKiB)} |`,
    `| a process holding only an Outbox, RssAnon (after GC) | ${mib(m.hold.empty.rssAnonKiB)} | ${mib(m.hold.queued.rssAnonKiB)} | ${mib(m.hold.queued.rssAnonKiB - m.hold.empty.rssAnonKiB)} | — |`,
    `| that process, V8 heap used | ${mib(m.hold.empty.heapUsedKiB)} | ${mib(m.hold.queued.heapUsedKiB)} | ${mib(m.hold.queued.heapUsedKiB - m.hold.empty.heapUsedKiB)} | — |`,
    '',
    `Its API answered ${(d.empty.readyMs / 1000).toFixed(1)} s after spawn with the outbox empty, ${(d.queued.readyMs / 1000).toFixed(1)} s with it full (\`Outbox.open\` reads and validates every entry to count them). Then connected, the daemon drained ${d.draining.received.toLocaleString('en-US')} of them in the first ${d.draining.drainSec} s (${perSec(d.draining.perSec)} at the subscriber), RssAnon peak ${mib(d.draining.peakRssAnonKiB)}, ${mib(d.draining.end.rssAnonKiB)} at the end; per 5 s from the first message: ${d.draining.buckets.join(', ')}.`,
  ].join('\n');
}
