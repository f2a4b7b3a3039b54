/**
 * The command service on a real store and outbox: run at most once, exactly one final result per
 * command, answered again (never run again) when the same command arrives again, refusals answered
 * with their reason, a run cut short reported `interrupted` at the next start.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CommandService, issuersFromJson, newCommand, signCommand, type CommandHandler, type IssuerSet, type NewCommand } from '../../../runtime/commands/index.js';
import { CommandLedger } from '../../../runtime/commands/ledger.js';
import { Outbox, type OutboxEntry } from '../../../runtime/link/index.js';
import { createLogger } from '../../../runtime/logs/index.js';
import { parseCommandResult, type CommandResult } from '../../../runtime/protocol/index.js';
import { Store } from '../../../runtime/store/index.js';
import { generateKey } from '../../../runtime/trust/index.js';

const now = new Date('2030-05-01T12:00:00.000Z');
const operator = generateKey();
const resultTopic = 'outpost/v1/gw-1/cmd/result';
const log = createLogger({ level: 'error', sinks: [] });

function trusted(): IssuerSet {
  const parsed = issuersFromJson({ schema: 'outpost.command-issuers/1', issuers: { [operator.keyid]: { key: operator.key, types: ['touch', 'hang', 'big', 'diagnostics', 'tidy', 'stubborn', 'wait', 'long'], maxValiditySec: 3600 } }, revoked: [] });
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.issuers;
}

interface World {
  /** The wall clock the service reads; tests move it. */
  now: Date;
  location: string;
  store: Store;
  outbox: Outbox;
  service: CommandService;
  runs: string[];
  /** Every queued result, in send order, acked as read. */
  sent(): Promise<(OutboxEntry & { result: CommandResult })[]>;
  restart(): Promise<void>;
}

async function world(t: Test, handlers: Record<string, CommandHandler> = {}, location?: string, outboxBytes = 1024 * 1024): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-commands-'));
  if (!location) t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const at = location ?? join(dir, 'db');
  const runs: string[] = [];
  const big: CommandHandler = { args: z.strictObject({}), run: async () => ({ blob: 'x'.repeat(100 * 1024) }) };
  const touch: CommandHandler = { args: z.strictObject({ n: z.number().int().default(0) }), run: async (args, { command }) => (runs.push(command.id), { n: (args as { n: number }).n }) };
  const hang: CommandHandler = { args: z.strictObject({}), timeoutMs: 100, run: () => new Promise(() => undefined) };
  const w = {} as World;
  w.location = at;
  w.runs = runs;
  w.now = now;
  const open = async () => {
    w.store = await Store.open({ location: at, version: 1 });
    w.outbox = await Outbox.open(w.store, { maxBytes: outboxBytes, log });
    w.service = new CommandService({
      deviceId: 'gw-1',
      groups: ['site-a'],
      store: () => w.store,
      outbox: () => w.outbox,
      issuers: trusted,
      notEarlierThan: async () => undefined,
      handlers: new Map(Object.entries({ touch, hang, big, ...handlers })),
      skewMs: 0,
      log,
      now: () => w.now,
      graceMs: 200,
    });
    await w.service.start();
  };
  w.restart = async () => {
    await w.service.stop();
    await w.store.close();
    await open();
  };
  w.sent = async () => {
    await settle(w);
    const out: (OutboxEntry & { result: CommandResult })[] = [];
    for (let entry = await w.outbox.next(); entry; entry = await w.outbox.next()) {
      out.push({ ...entry, result: parseCommandResult(entry.payload) });
      await w.outbox.ack(entry.key);
    }
    return out;
  };
  await open();
  t.teardown(async () => {
    await w.service.stop();
    await w.store.close();
  });
  return w;
}

/** Lets the service work off its inbox. */
async function settle(w: World): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setTimeout(r, 5));
  await (w.service as unknown as { draining?: Promise<void> }).draining;
}

const command = (overrides: Partial<NewCommand> = {}) => newCommand({ id: 'c-1', issuer: operator.keyid, target: { device: 'gw-1' }, type: 'touch', args: { n: 7 }, validitySec: 600, now, ...overrides });
const message = (signed = command(), extra: { responseTopic?: string; correlationData?: Uint8Array } = {}) => ({ topic: 'outpost/v1/gw-1/cmd', payload: Buffer.from(JSON.stringify(signCommand(signed, operator))), ...extra });

t.test('a command runs once; its result goes to the response topic with the correlation data', async (t) => {
  const w = await world(t);
  await w.service.receive(message(command(), { responseTopic: `${resultTopic}/ops-1`, correlationData: Buffer.from('req-1') }));
  const [sent, ...more] = await w.sent();
  t.same(w.runs, ['c-1']);
  t.equal(more.length, 0, 'one result');
  t.equal(sent?.topic, `${resultTopic}/ops-1`);
  t.equal(Buffer.from(sent?.correlationData ?? '', 'base64').toString(), 'req-1');
  t.match(sent?.result, { id: 'c-1', deviceId: 'gw-1', type: 'touch', outcome: 'succeeded', output: { n: 7 } });
});

t.test('the same command again (QoS 1 duplicate, redelivery, replay): the result again, never a second run; also after a restart', async (t) => {
  const w = await world(t);
  await w.service.receive(message());
  const [first] = await w.sent();
  await w.service.receive(message());
  const [again] = await w.sent();
  t.same(w.runs, ['c-1'], 'ran once');
  t.equal(again?.payload, first?.payload, 'the recorded result, as it was');
  await w.restart();
  await w.service.receive(message());
  const [afterRestart] = await w.sent();
  t.same(w.runs, ['c-1'], 'still once after a restart');
  t.equal(afterRestart?.payload, first?.payload);
});

t.test('a response topic other than this device\'s cmd/result and below it is not used: the default is', async (t) => {
  const w = await world(t);
  const elsewhere = ['elsewhere/replies', 'outpost/v1/ops/replies', 'outpost/v1/gw-2/cmd/result', 'outpost/v1/gw-1/state', `${resultTopic}/+`];
  for (const [i, responseTopic] of elsewhere.entries()) await w.service.receive(message(command({ id: `c-${i}` }), { responseTopic }));
  // Refused before anything is verified, too: the topic is read from an unsigned message.
  await w.service.receive({ topic: 'x', payload: Buffer.from('{not json'), responseTopic: 'outpost/v1/gw-2/cmd/result' });
  t.same((await w.sent()).map((s) => s.topic), elsewhere.concat('x').map(() => resultTopic));
});

t.test('the same command again: its recorded result goes to this delivery\'s response topic, with this delivery\'s correlation data', async (t) => {
  const w = await world(t);
  await w.service.receive(message(command(), { responseTopic: `${resultTopic}/first`, correlationData: Buffer.from('req-1') }));
  const [first] = await w.sent();
  await w.service.receive(message(command(), { responseTopic: `${resultTopic}/second`, correlationData: Buffer.from('req-2') }));
  await w.service.receive(message(command()));
  const again = await w.sent();
  t.same(w.runs, ['c-1'], 'ran once');
  const correlation = (entry: OutboxEntry | undefined) => (entry?.correlationData === undefined ? undefined : Buffer.from(entry.correlationData, 'base64').toString());
  t.same([first, ...again].map((s) => [s?.topic, correlation(s)]), [
    [`${resultTopic}/first`, 'req-1'],
    [`${resultTopic}/second`, 'req-2'],
    [resultTopic, undefined],
  ]);
  t.ok(again.every((s) => s.payload === first?.payload), 'the recorded result, as it was');
});

t.test('refusals are answered with their reason and run nothing; only authentic ones are recorded', async (t) => {
  const w = await world(t);
  const forged = signCommand(command({ id: 'c-forged' }), generateKey());
  forged.signatures = [{ keyid: operator.keyid, sig: forged.signatures[0]!.sig }];
  await w.service.receive({ topic: 'x', payload: Buffer.from(JSON.stringify(forged)) });
  await w.service.receive({ topic: 'x', payload: Buffer.from('{not json') });
  await w.service.receive(message(command({ id: 'c-late', now: new Date(now.getTime() - 3_600_000) })));
  await w.service.receive(message(command({ id: 'c-type', type: 'reboot' })));
  const sent = await w.sent();
  // Refused before the signature verified: nothing it claims is reported as the command's own,
  // and the answer goes in the lowest class, after (and evicted before) real results.
  t.same(sent.map((s) => [s.class, s.result.id, s.result.claimedId, s.result.type, s.result.outcome, s.result.reason]), [
    ['result', 'c-late', undefined, 'touch', 'expired', 'expired'],
    ['result', 'c-type', undefined, 'reboot', 'rejected', 'unknown-type'],
    ['log', 'unknown', 'c-forged', undefined, 'rejected', 'bad-signature'],
    ['log', 'unknown', undefined, undefined, 'rejected', 'malformed-json'],
  ]);
  t.same(w.runs, []);
  const ledger = new CommandLedger(w.store);
  t.equal(await ledger.get('c-forged'), undefined, 'a forgery burns no id');
  t.equal((await ledger.get('c-type'))?.state, 'finished', 'an authentic refusal is recorded');
  // The forged id is still free for the real command.
  await w.service.receive(message(command({ id: 'c-forged' })));
  t.same((await w.sent()).map((s) => s.result.outcome), ['succeeded']);
});

t.test('a flood of unauthenticated messages: answered at most 10 at once then one a second, never pushing a real result out of a full outbox', async (t) => {
  const w = await world(t, {}, undefined, 1_500);
  await w.service.receive(message(command({ id: 'c-real' })));
  await settle(w);
  const flooding = Date.now();
  for (let i = 0; i < 30; i++) {
    const forged = signCommand(command({ id: `c-forged-${i}` }), generateKey());
    forged.signatures = [{ keyid: operator.keyid, sig: forged.signatures[0]!.sig }];
    await w.service.receive({ topic: 'x', payload: Buffer.from(i % 2 === 0 ? '{not json' : JSON.stringify(forged)) });
  }
  await settle(w);
  const elapsedSec = (Date.now() - flooding) / 1000;
  // The outbox is read only now: what the flood left of it.
  const sent = await w.sent();
  t.same(sent.filter((s) => s.class === 'result').map((s) => s.result.id), ['c-real'], 'the real result is still queued');
  t.equal(w.outbox.stats().dropped.result, 0, 'no result evicted');
  const answered = w.outbox.stats().dropped.log + sent.filter((s) => s.class === 'log').length;
  t.ok(answered >= 10 && answered <= 10 + Math.ceil(elapsedSec), `answered ${answered} of 30 in ${elapsedSec} s`);
  await new Promise((r) => setTimeout(r, 1_100));
  await w.service.receive({ topic: 'x', payload: Buffer.from('{not json') });
  t.same((await w.sent()).map((s) => [s.class, s.result.outcome]), [['log', 'rejected']], 'answered again a second later');
});

t.test('a forgery that claims a recorded command\'s id gets the recorded result re-sent in the lowest class, where the command asked, not where the forgery asks', async (t) => {
  const w = await world(t);
  await w.service.receive(message());
  const [first] = await w.sent();
  const forged = signCommand(command(), generateKey());
  forged.signatures = [{ keyid: operator.keyid, sig: forged.signatures[0]!.sig }];
  await w.service.receive({ topic: 'x', payload: Buffer.from(JSON.stringify(forged)), responseTopic: `outpost/v1/gw-1/cmd/result/elsewhere`, correlationData: Buffer.from('someone-else') });
  const again = await w.sent();
  t.same(again.map((s) => [s.class, s.topic, s.correlationData, s.payload]), [['log', first?.topic, first?.correlationData, first?.payload]]);
  t.same(w.runs, ['c-1']);
});

t.test('a handler past its timeout fails the command, which is answered once', async (t) => {
  const w = await world(t);
  await w.service.receive(message(command({ id: 'c-hang', type: 'hang', args: {} })));
  await new Promise((r) => setTimeout(r, 300));
  const sent = await w.sent();
  t.same(sent.map((s) => [s.result.outcome, s.result.message]), [['failed', 'timed out after 100 ms']]);
});

t.test('at its timeout the signal aborts and the answer waits for the handler to settle: failed "timed out after N ms", whatever it throws', async (t) => {
  const events: string[] = [];
  const w = await world(t, {
    tidy: {
      args: z.strictObject({}),
      timeoutMs: 100,
      run: (_args, { signal }) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () => setTimeout(() => (events.push('cleaned up'), reject(new Error('aborted while copying'))), 100));
        }),
    },
  });
  w.outbox.onStored(() => events.push('queued'));
  await w.service.receive(message(command({ id: 'c-tidy', type: 'tidy', args: {} })));
  await until(() => events.includes('queued'));
  t.same(events, ['cleaned up', 'queued'], 'answered after the handler settled, not while it still ran');
  t.same((await w.sent()).map((s) => [s.result.id, s.result.outcome, s.result.message]), [['c-tidy', 'failed', 'timed out after 100 ms']]);
});

t.test('a handler that ignores its signal: answered failed when the grace is over, the next command runs, its late completion adds nothing', async (t) => {
  const events: string[] = [];
  const w = await world(t, {
    stubborn: { args: z.strictObject({}), timeoutMs: 100, run: () => new Promise((resolve) => setTimeout(() => (events.push('stubborn done'), resolve({ late: true })), 800)) },
  });
  w.outbox.onStored(() => events.push('queued'));
  await w.service.receive(message(command({ id: 'c-stubborn', type: 'stubborn', args: {} })));
  await w.service.receive(message(command({ id: 'c-next' })));
  await until(() => events.includes('stubborn done'));
  await new Promise((r) => setTimeout(r, 100));
  t.same(events, ['queued', 'queued', 'stubborn done'], 'both answered before the stubborn handler returned');
  t.same((await w.sent()).map((s) => [s.result.id, s.result.outcome, s.result.message]), [
    ['c-stubborn', 'failed', 'timed out after 100 ms'],
    ['c-next', 'succeeded', 'done'],
  ]);
  t.match(parseCommandResult((await new CommandLedger(w.store).get('c-stubborn'))?.result ?? '{}'), { outcome: 'failed' }, 'recorded as failed');
});

t.test('outpost stopping mid-run, the handler never settling: nothing is answered then, the stop waits at most the grace, the next start answers interrupted and runs nothing', async (t) => {
  const started: string[] = [];
  const w = await world(t, {
    wait: {
      args: z.strictObject({}),
      run: (_args, { command }) => (started.push(command.id), new Promise(() => undefined)),
    },
  });
  const id = 'c-wait';
  await w.service.receive(message(command({ id, type: 'wait', args: {} })));
  await until(() => started.includes(id));
  const stopping = Date.now();
  await w.restart();
  t.ok(Date.now() - stopping < 1_000, 'the stop did not wait for the handler beyond the grace');
  t.same((await w.sent()).map((s) => [s.result.id, s.result.outcome]), [[id, 'interrupted']], 'interrupted, not failed');
  await w.service.receive(message(command({ id, type: 'wait', args: {} })));
  t.same((await w.sent()).map((s) => [s.result.id, s.result.outcome]), [[id, 'interrupted']], 'the same command again: the recorded answer');
  t.same(started, [id], 'ran once');
});

t.test('outpost stopping mid-run, the handler settling within the grace: its own result is recorded before the stop returns and sent after the next start; a success whose essential whenAnswered action a stopping daemon will not take is interrupted', async (t) => {
  const started: string[] = [];
  const actions: string[] = [];
  const w = await world(t, {
    wait: {
      args: z.strictObject({ fail: z.boolean(), follow: z.enum(['none', 'plain', 'essential']) }),
      run: (args, { command, signal, whenAnswered }) => {
        const { fail, follow } = args as { fail: boolean; follow: 'none' | 'plain' | 'essential' };
        started.push(command.id);
        if (follow !== 'none') whenAnswered(() => actions.push(command.id), { essential: follow === 'essential' });
        // It finishes its step when told to stop: done, or given up.
        return new Promise((resolve, reject) => signal.addEventListener('abort', () => setImmediate(() => (fail ? reject(new Error('gave up at the stop')) : resolve({ finished: true })))));
      },
    },
  });
  const cases = [
    [false, 'none', 'succeeded', 'done'],
    [true, 'essential', 'failed', 'gave up at the stop'],
    // Its action only applies what it did (a set-config's restart): the next start does that anyway.
    [false, 'plain', 'succeeded', 'done'],
    // Its success meant "and then reboot", which the stop will not do: answering succeeded would lie.
    [false, 'essential', 'interrupted', /outpost stopped while the command ran/],
  ] as const;
  for (const [fail, follow, outcome, message_] of cases) {
    const id = `c-wait-${fail}-${follow}`;
    await w.service.receive(message(command({ id, type: 'wait', args: { fail, follow } })));
    await until(() => started.includes(id));
    await w.service.stop();
    if (outcome !== 'interrupted') t.match(await new CommandLedger(w.store).get(id), { state: 'finished' }, 'recorded before the stop returned');
    await w.restart();
    const sent = await w.sent();
    t.match(sent.map((s) => [s.result.id, s.result.outcome, s.result.message]), [[id, outcome, message_]], `${id}: answered ${outcome}, once`);
    t.equal(sent.length, 1);
    if (outcome === 'succeeded') t.same(sent[0]?.result.output, { finished: true });
    await w.service.receive(message(command({ id, type: 'wait', args: { fail, follow } })));
    t.same((await w.sent()).map((s) => s.payload), sent.map((s) => s.payload), 'the same command again: the recorded answer');
  }
  t.same(started, cases.map(([fail, follow]) => `c-wait-${fail}-${follow}`), 'each ran once');
  t.same(actions, [], 'a daemon already stopping restarts or reboots for no command');
});

t.test('progress: events in the event class, at most one a second (the last report of a second wins), none after the result', async (t) => {
  let late = (): void => undefined;
  let outOfRange: unknown;
  const w = await world(t, {
    long: {
      args: z.strictObject({}),
      run: async (_args, { progress }) => {
        progress(0, 'starting');
        progress(0.25);
        progress(0.5, 'copying');
        await new Promise((r) => setTimeout(r, 1_500));
        // Not yet a second after the last one: still pending when the result supersedes it.
        progress(0.75);
        late = () => progress(1, 'after the result');
        try {
          progress(2);
        } catch (err) {
          outOfRange = err;
        }
        return { copied: true };
      },
    },
  });
  await w.service.receive(message(command({ id: 'c-long', type: 'long', args: {} })));
  await until(() => w.outbox.stats().entries >= 3);
  late();
  await new Promise((r) => setTimeout(r, 1_200));
  const queued: OutboxEntry[] = [];
  for (let entry = await w.outbox.next(); entry; entry = await w.outbox.next()) {
    queued.push(entry);
    await w.outbox.ack(entry.key);
  }
  const result = queued.filter((e) => e.class === 'result').map((e) => parseCommandResult(e.payload));
  t.match(result, [{ id: 'c-long', outcome: 'succeeded' }]);
  const events = queued.filter((e) => e.class === 'event');
  t.ok(events.every((e) => e.topic === 'outpost/v1/gw-1/events'), 'on the events topic');
  t.same(events.map((e) => JSON.parse(e.payload) as unknown), [
    { schema: 'outpost.command-progress/1', id: 'c-long', deviceId: 'gw-1', type: 'long', fraction: 0, message: 'starting', at: now.toISOString() },
    { schema: 'outpost.command-progress/1', id: 'c-long', deviceId: 'gw-1', type: 'long', fraction: 0.5, message: 'copying', at: now.toISOString() },
  ]);
  t.equal(queued.length, 3, 'nothing else');
  t.match(outOfRange, { code: 'PROTOCOL_INVALID' }, 'a fraction outside [0, 1] throws at the call');
});

t.test('a run cut short (started, never finished) is reported interrupted at the next start, and not run again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-commands-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const location = join(dir, 'db');
  // What a kill -9 mid-run leaves: the id recorded as started, no result.
  const store = await Store.open({ location, version: 1 });
  const ledger = new CommandLedger(store);
  const signed = command({ id: 'c-cut' });
  await ledger.record(store.batch(), 'c-cut', { state: 'started', type: 'touch', nonce: signed.nonce, expires: signed.expires, replyTopic: resultTopic, startedAt: now.toISOString() }).commit();
  await store.close();
  const w = await world(t, {}, location);
  const sent = await w.sent();
  t.same(sent.map((s) => [s.result.id, s.result.outcome]), [['c-cut', 'interrupted']]);
  await w.service.receive(message(signed));
  const again = await w.sent();
  t.same(w.runs, [], 'never run');
  t.same(again.map((s) => s.result.outcome), ['interrupted'], 'the same command again gets the recorded result');
});

t.test('whenAnswered: runs once the result is recorded and queued, and only when the command succeeded', async (t) => {
  const queued: Promise<OutboxEntry | undefined>[] = [];
  const w: World = await world(t, {
    touch: {
      args: z.strictObject({ n: z.number().int() }),
      run: async (args, { whenAnswered }) => {
        whenAnswered(() => void queued.push(w.outbox.next()));
        if ((args as { n: number }).n < 0) throw new Error('refused by the handler');
        return {};
      },
    },
  });
  await w.service.receive(message(command({ id: 'c-ok', args: { n: 1 } })));
  await settle(w);
  t.equal(queued.length, 1, 'ran after the success');
  t.match(parseCommandResult((await queued[0])?.payload ?? '{}'), { id: 'c-ok', outcome: 'succeeded' }, 'the result was already in the outbox');
  await w.sent();
  await w.service.receive(message(command({ id: 'c-fail', args: { n: -1 } })));
  t.match((await w.sent()).map((s) => s.result), [{ id: 'c-fail', outcome: 'failed' }]);
  t.equal(queued.length, 1, 'not after a failure');
});

t.test('a message stored while the worker reads an empty inbox is still run (not left for the next message)', async (t) => {
  const w = await world(t);
  // This test's own service on the same store: the world's one stays out of the way.
  await w.service.stop();
  // Holds the worker's next inbox read after it has read (and found nothing), as a slow disk would.
  let hold: Promise<void> | undefined;
  let release = (): void => undefined;
  const real = w.store.collection.bind(w.store);
  const held = new Proxy(w.store, {
    get(target, property, receiver) {
      if (property !== 'collection') return Reflect.get(target, property, receiver) as unknown;
      return (name: string, schema: z.ZodType) => {
        const collection = real(name, schema);
        if (name !== 'command-inbox') return collection;
        return new Proxy(collection, {
          get(c, p, r) {
            if (p !== 'range') return Reflect.get(c, p, r) as unknown;
            return async (options: Parameters<typeof collection.range>[0]) => {
              const read = await c.range(options);
              if (hold && read.length === 0) await hold;
              return read;
            };
          },
        });
      };
    },
  });
  const service = new CommandService({
    deviceId: 'gw-1', groups: [], store: () => held, outbox: () => w.outbox, issuers: trusted, notEarlierThan: async () => undefined,
    handlers: new Map([['touch', {
      args: z.strictObject({ n: z.number().int().default(0) }),
      run: async (_args, { command }) => {
        w.runs.push(command.id);
        // Armed here, so the worker's next read, the one after this command, is the one held.
        if (command.id === 'first') hold = new Promise((resolve) => (release = resolve));
      },
    }]]),
    skewMs: 0, log, now: () => now,
  });
  await service.start();
  t.teardown(() => service.stop());
  await service.receive(message(command({ id: 'first' })));
  await until(() => w.runs.includes('first'));
  // The worker is now held in its empty read; the second message is stored meanwhile.
  await new Promise((r) => setTimeout(r, 50));
  await service.receive(message(command({ id: 'second' })));
  hold = undefined;
  release();
  await until(() => w.runs.includes('second'), 2_000).catch(() => undefined);
  t.same(w.runs, ['first', 'second'], 'both ran');
});

async function until(done: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a command that ran, delivered again after it expired, gets its recorded result, not a second one', async (t) => {
  const w = await world(t);
  await w.service.receive(message());
  const [first] = await w.sent();
  w.now = new Date(now.getTime() + 3_600_000);
  await w.service.receive(message());
  const [again] = await w.sent();
  t.equal(again?.payload, first?.payload, 'the same result, not "expired"');
  t.same(w.runs, ['c-1']);
});

t.test('a wall clock wrong ahead at one start prunes nothing: corrected, the command is still answered from the record', async (t) => {
  const w = await world(t);
  await w.service.receive(message());
  const [first] = await w.sent();
  w.now = new Date(now.getTime() + 86_400_000);
  await w.restart();
  w.now = now;
  await w.restart();
  await w.service.receive(message());
  const [again] = await w.sent();
  t.same(w.runs, ['c-1'], 'not run a second time');
  t.equal(again?.payload, first?.payload);
});

t.test('an output too large for a result: the command is answered failed, once, without it (not left started)', async (t) => {
  const w = await world(t);
  await w.service.receive(message(command({ id: 'c-big', type: 'big', args: {} })));
  const sent = await w.sent();
  t.equal(sent.length, 1);
  t.match(sent[0]?.result, { id: 'c-big', outcome: 'failed', message: /the command ran, but its output does not fit/ });
  t.equal((await new CommandLedger(w.store).get('c-big'))?.state, 'finished');
  await w.restart();
  t.same(await w.sent(), [], 'nothing reported interrupted at the next start');
});
