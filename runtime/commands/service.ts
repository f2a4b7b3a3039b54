/**
 * Runs the signed commands the broker delivers: each one verified, run at most once, and answered
 * with exactly one final result through the persistent outbox.
 *
 * Invariants:
 * - A message is in the store (`command-inbox`) before `receive()` resolves, and the link sends
 *   its PUBACK only then: a power cut after the PUBACK cannot lose it.
 * - One message at a time, in arrival order. The inbox entry is removed in the batch that records
 *   what became of it (started, refused, or answered again), so a crash between two steps neither
 *   drops a message nor runs one twice: ledger.ts records `started` before the handler runs.
 * - Refusals are answered too (every failure gets a result with its reason), but only authentic
 *   ones are recorded: an unsigned message cannot fill the replay store or burn a real id.
 * - What a message refused before its signature verified makes the device send is queued in the
 *   lowest outbox class (evicted first) and rate-limited, and names the id it claimed only as
 *   `claimedId`: a flood of forgeries can neither push real results out of a full outbox nor
 *   pass for answers about real commands.
 * - A command that arrives again is answered with the recorded result, never run again; one still
 *   running is answered when it finishes.
 * - A handler's run ends for the service at its timeout or at a stop: the signal aborts, the
 *   handler gets a bounded grace to settle, then the service goes on without it (a promise cannot
 *   be killed). A timeout is answered `failed`, decided at the timeout whatever the handler does
 *   later, so a late completion can never produce a second result. A handler that settles within
 *   the grace of a stop is answered as it settled; one still running when the grace is over is
 *   left `started` and answered `interrupted` at the next start, as after a power cut; so is a
 *   success whose essential `whenAnswered` action (a reboot) the stopping daemon will not take.
 */
import { z } from 'zod';
import { isOutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { Service } from '../lifecycle/index.js';
import type { Outbox, OutboxClass, OutboxMessage } from '../link/index.js';
import { COMMAND_CORRELATION_MAX_BYTES, COMMAND_RESULT_SCHEMA_ID, commandResultTopicFor, encodeCommandResult, UNKNOWN_COMMAND_ID, type CommandResult, type CommandSigned } from '../protocol/index.js';
import type { Collection, Store } from '../store/index.js';
import type { IssuerSet } from './issuers.js';
import { CommandLedger, type LedgerEntry } from './ledger.js';
import { ProgressReporter } from './progress.js';
import { verifyCommand } from './verify.js';

/** What a handler is given besides its validated args. */
export interface HandlerContext {
  readonly command: CommandSigned;
  /**
   * Aborted at the handler's timeout and when the daemon stops; the handler then has
   * {@link HANDLER_GRACE_MS} to settle before the service goes on without it.
   */
  readonly signal: AbortSignal;
  /**
   * Runs `action` once the command `succeeded` and its result is recorded and queued (never when
   * it failed or was cut short, nor when the daemon is stopping): for what would end the daemon
   * before it could answer. `essential`: the action is what the command does (a reboot), so a
   * success the stopping daemon cannot follow with it is not answered `succeeded` but left for
   * `interrupted`; otherwise (a restart to apply a config already written) it is answered as it is.
   */
  readonly whenAnswered: (action: () => void, options?: { essential?: boolean }) => void;
  /**
   * Reports how far the command is (`fraction` from 0 to 1, a short `message`) as an
   * `outpost.command-progress/1` event: at most one a second, the last report of a second
   * winning; ignored once the run ended. Throws for a fraction outside [0, 1].
   */
  readonly progress: (fraction?: number, message?: string) => void;
}

/** One command type. */
export interface CommandHandler<A = unknown> {
  readonly args: z.ZodType<A>;
  /** Bound on one run; default {@link DEFAULT_HANDLER_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Resolves with the result's `output` (JSON), or throws: the command `failed` with the message. */
  run(args: A, context: HandlerContext): Promise<unknown>;
}

/** A message as the link hands it over, before its PUBACK. */
export interface InboundMessage {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly responseTopic?: string;
  readonly correlationData?: Uint8Array;
}

export const DEFAULT_HANDLER_TIMEOUT_MS = 60_000;
/**
 * How long a handler whose signal aborted may take to settle (kill its child, undo half a step)
 * before the service answers without it; well inside the daemon's stop budget.
 */
export const HANDLER_GRACE_MS = 2_000;
interface AnsweredAction {
  readonly action: () => void;
  readonly essential: boolean;
}

/** Unauthenticated messages answered at once; after that, one per {@link UNAUTHENTIC_ANSWER_INTERVAL_MS}. */
const UNAUTHENTIC_ANSWER_BURST = 10;
const UNAUTHENTIC_ANSWER_INTERVAL_MS = 1_000;

/** What the service needs; the functions are read at each message so trust changes take effect. */
export interface CommandServiceOptions {
  readonly deviceId: string;
  readonly groups: readonly string[];
  readonly store: () => Store;
  readonly outbox: () => Outbox;
  readonly issuers: () => IssuerSet;
  /** The newest signed time seen (the TUF floor): the device has no RTC. */
  readonly notEarlierThan: () => Promise<Date | undefined>;
  readonly handlers: ReadonlyMap<string, CommandHandler>;
  readonly skewMs: number;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Default {@link HANDLER_GRACE_MS}. */
  readonly graceMs?: number;
  /**
   * Called as each step has been persisted (`stored`: in the inbox; `started`: recorded, the
   * handler about to run; `ran`: the handler returned, its result not yet recorded; `finished`:
   * recorded and queued). For the crash tests' fault injection (docs/architecture.md).
   */
  readonly onStep?: (step: CommandStep, id: string | undefined) => void;
}

/** The steps {@link CommandServiceOptions.onStep} reports. */
export type CommandStep = 'stored' | 'started' | 'ran' | 'finished';

/** What a run comes to, before it is recorded. */
interface Ran {
  readonly outcome: 'succeeded' | 'failed';
  readonly message: string;
  readonly output?: unknown;
}

const inboxSchema = z.strictObject({
  payload: z.string(),
  responseTopic: z.string().optional(),
  correlationData: z.string().optional(),
});
type InboxEntry = z.infer<typeof inboxSchema>;

/** Where one delivery's answer goes, as the ledger keeps it: its reply topic and correlation data (base64). */
type Reply = Pick<LedgerEntry, 'replyTopic' | 'correlationData'>;

function answer(cls: OutboxClass, reply: Reply, payload: string): OutboxMessage {
  return { class: cls, topic: reply.replyTopic, payload, ...(reply.correlationData === undefined ? {} : { correlationData: reply.correlationData }) };
}

/** A token bucket on the monotonic clock (the wall clock of a device without an RTC jumps). */
class Allowance {
  #tokens: number;
  #at = performance.now();

  constructor(
    private readonly burst: number,
    private readonly intervalMs: number,
  ) {
    this.#tokens = burst;
  }

  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + (now - this.#at) / this.intervalMs);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

export class CommandService implements Service {
  readonly name = 'commands';
  private inbox: Collection<InboxEntry> | undefined;
  private ledger: CommandLedger | undefined;
  private sequence = 0;
  private draining: Promise<void> | undefined;
  /** Set by each kick, cleared by each read of the inbox (see kick()). */
  private stored = false;
  private stopping = false;
  private readonly stopController = new AbortController();
  private readonly now: () => Date;
  private readonly unauthentic = new Allowance(UNAUTHENTIC_ANSWER_BURST, UNAUTHENTIC_ANSWER_INTERVAL_MS);
  /** Unauthenticated messages left unanswered since the last one answered. */
  private unanswered = 0;

  constructor(private readonly options: CommandServiceOptions) {
    this.now = options.now ?? (() => new Date());
  }

  /** Answers every command a crash cut short as `interrupted`, then works off what the inbox holds. */
  async start(): Promise<void> {
    const store = this.options.store();
    this.inbox = store.collection('command-inbox', inboxSchema);
    this.ledger = new CommandLedger(store);
    // The last key only: the inbox may hold many messages after a long time offline.
    const [last] = await this.inbox.range({ reverse: true, limit: 1 });
    this.sequence = last === undefined ? 0 : Number(last[0]) + 1;
    for (const [id, entry] of await this.ledger.unfinished()) {
      this.options.log.warn('a command was cut short by a stop or power cut; it is reported interrupted, not run again', { id, type: entry.type });
      await this.finish(id, entry, { outcome: 'interrupted', message: 'outpost stopped while the command ran; it was not run again' });
    }
    // By the signed floor only: a wall clock that is wrong ahead at one start (no RTC, a bad NTP
    // answer) would prune entries of commands that are valid again once it is corrected.
    const floor = await this.options.notEarlierThan().catch(() => undefined);
    const pruned = floor === undefined ? 0 : await this.ledger.prune(floor);
    if (pruned > 0) this.options.log.debug('expired commands left the replay store', { pruned });
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopController.abort();
    await this.draining;
  }

  /** Stores one delivered message; the link acknowledges it once this resolves. */
  async receive(message: InboundMessage): Promise<void> {
    if (!this.inbox || this.stopping) throw new Error('the command service is not running');
    const key = String(this.sequence++).padStart(16, '0');
    const entry: InboxEntry = {
      payload: Buffer.from(message.payload).toString('base64'),
      ...(message.responseTopic === undefined ? {} : { responseTopic: message.responseTopic }),
      ...(message.correlationData === undefined ? {} : { correlationData: Buffer.from(message.correlationData).toString('base64') }),
    };
    await this.options.store().batch().put(this.inbox, key, entry).commit();
    this.options.onStep?.('stored', undefined);
    this.kick();
  }

  /**
   * Starts working off the inbox, or tells the run under way to look again: its last read may have
   * begun before this message was stored, and would otherwise end the run with the message left
   * waiting for the next one.
   */
  private kick(): void {
    this.stored = true;
    this.draining ??= this.drain().finally(() => {
      this.draining = undefined;
    });
  }

  private async drain(): Promise<void> {
    while (!this.stopping && this.inbox) {
      this.stored = false;
      const [next] = await this.inbox.range({ limit: 1 });
      if (!next) {
        if (this.stored) continue;
        return;
      }
      try {
        await this.handle(next[0], next[1]);
      } catch (err) {
        // A store failure: the entry stays in the inbox and is tried again at the next message or start.
        this.options.log.error('cannot process a command; it stays queued', { err });
        return;
      }
    }
  }

  private async handle(key: string, entry: InboxEntry): Promise<void> {
    const { options } = this;
    const ledger = this.ledger!;
    const inbox = this.inbox!;
    const replyTopic = commandResultTopicFor(options.deviceId, entry.responseTopic);
    // Echoed as it came, up to the limit; longer is not echoed (docs/protocol.md).
    const correlation = entry.correlationData !== undefined && Buffer.from(entry.correlationData, 'base64').length <= COMMAND_CORRELATION_MAX_BYTES ? entry.correlationData : undefined;
    const reply: Reply = { replyTopic, ...(correlation === undefined ? {} : { correlationData: correlation }) };
    const notEarlierThan = await options.notEarlierThan().catch(() => undefined);
    const verdict = await verifyCommand(Buffer.from(entry.payload, 'base64'), {
      deviceId: options.deviceId,
      groups: options.groups,
      issuers: options.issuers(),
      now: this.now(),
      ...(notEarlierThan ? { notEarlierThan } : {}),
      skewMs: options.skewMs,
      seen: (id, nonce) => ledger.seen(id, nonce),
      argsSchemas: new Map([...options.handlers].map(([type, handler]) => [type, handler.args])),
    });
    const batch = options.store().batch().del(inbox as Collection<unknown>, key);
    if (!verdict.ok) {
      if (!verdict.authentic && !this.unauthentic.take()) {
        this.unanswered += 1;
        options.log.debug('an unauthenticated message is not answered: too many of them', { reason: verdict.reason });
        await batch.commit();
        return;
      }
      if (this.unanswered > 0) {
        options.log.warn('unauthenticated messages were not answered: too many of them', { unanswered: this.unanswered });
        this.unanswered = 0;
      }
      const cls: OutboxClass = verdict.authentic ? 'result' : 'log';
      // A command seen before keeps its one answer, whatever this delivery's verdict: redelivered
      // after it expired, or after its issuer was rotated out, it is answered as it was, never
      // with a second, different result.
      const recorded = verdict.id === undefined ? undefined : await ledger.get(verdict.id);
      if (recorded !== undefined) {
        if (recorded.result !== undefined) {
          options.log.info('a command arrived again; its result is sent again, the command is not run again', { id: verdict.id });
          // A signed repeat is answered where it asks: a requester that missed the first answer asks
          // again on its own topic. An unsigned claim only gets it re-sent where the command asked,
          // or anyone could have a real result (logs, say) published where and with what
          // correlation data it likes, answering some other pending request.
          await options.outbox().put(answer(cls, verdict.authentic ? reply : recorded, recorded.result), batch);
        }
        // Still running: its one final result is on its way.
        await batch.commit();
        return;
      }
      const fields = { outcome: verdict.reason === 'expired' ? 'expired' : 'rejected', reason: verdict.reason, message: verdict.message } as const;
      const signed = verdict.authentic ? verdict.command : undefined;
      const result = signed ? this.result(signed.id, signed.type, fields) : this.result(UNKNOWN_COMMAND_ID, undefined, { ...fields, ...(verdict.id === undefined ? {} : { claimedId: verdict.id }) });
      options.log.warn('command refused', { id: verdict.id, reason: verdict.reason, message: verdict.message, authentic: verdict.authentic });
      const encoded = encodeCommandResult(result);
      // A refused replay keeps the original's entry; only a first authentic refusal is recorded.
      if (signed && verdict.reason !== 'replayed-nonce') {
        ledger.record(batch, signed.id, { state: 'finished', type: signed.type, nonce: signed.nonce, expires: signed.expires, ...reply, result: encoded });
      }
      await options.outbox().put(answer(cls, reply, encoded), batch);
      await batch.commit();
      return;
    }
    const { command } = verdict;
    const started: LedgerEntry = { state: 'started', type: command.type, nonce: command.nonce, expires: command.expires, ...reply, startedAt: this.now().toISOString() };
    await ledger.record(batch, command.id, started).commit();
    options.log.info('command started', { id: command.id, type: command.type, issuer: command.issuer });
    options.onStep?.('started', command.id);
    const answered: AnsweredAction[] = [];
    const outcome = await this.run(command, verdict.args, answered);
    if (outcome === undefined || (outcome.outcome === 'succeeded' && this.stopping && answered.some((a) => a.essential))) {
      options.log.warn('outpost is stopping: the command is answered interrupted at the next start', { id: command.id, type: command.type });
      return;
    }
    options.onStep?.('ran', command.id);
    const answeredAs = await this.finish(command.id, started, outcome);
    options.onStep?.('finished', command.id);
    // A daemon already stopping ends anyway; a restart asked for now would end its stop early.
    if (answeredAs === 'succeeded' && !this.stopping) {
      for (const { action } of answered) {
        try {
          action();
        } catch (err) {
          options.log.error('an action after a command\'s result failed', { id: command.id, err });
        }
      }
    }
  }

  /** Runs the handler; undefined when a stop cut it short and it did not settle within the grace (it stays `started`). */
  private async run(command: CommandSigned, args: unknown, answered: AnsweredAction[]): Promise<Ran | undefined> {
    const stop = this.stopController.signal;
    if (stop.aborted) return undefined;
    const handler = this.options.handlers.get(command.type)!;
    const timeoutMs = handler.timeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS;
    const timeout = new AbortController();
    const signal = AbortSignal.any([timeout.signal, stop]);
    const timer = setTimeout(() => timeout.abort(), timeoutMs);
    const { deviceId, outbox, log } = this.options;
    const progress = new ProgressReporter({ command, deviceId, outbox, now: this.now, log });
    const context: HandlerContext = { command, signal, whenAnswered: (action, { essential = false } = {}) => void answered.push({ action, essential }), progress: (fraction, message) => progress.report(fraction, message) };
    const settled = Promise.resolve()
      .then(() => handler.run(args, context))
      .then(
        (output): Ran => ({ outcome: 'succeeded', message: 'done', ...(output === undefined ? {} : { output }) }),
        (err: unknown): Ran => ({ outcome: 'failed', message: (err instanceof Error ? err.message : String(err)).slice(0, 1024) }),
      );
    const cut = new Promise<undefined>((resolve) => signal.addEventListener('abort', () => resolve(undefined), { once: true }));
    let grace: NodeJS.Timeout | undefined;
    try {
      const ran = await Promise.race([settled, cut]);
      if (ran !== undefined) return ran;
      // The first source to abort decides: a stop during the grace after a timeout is still a timeout.
      const timedOut = signal.reason === timeout.signal.reason;
      const late = await Promise.race([settled, new Promise<undefined>((resolve) => (grace = setTimeout(() => resolve(undefined), this.options.graceMs ?? HANDLER_GRACE_MS)))]);
      if (late === undefined) this.options.log.warn('a handler cut short did not settle within its grace; the service goes on without it', { id: command.id, type: command.type, timedOut });
      // A stop has no outcome of its own: a handler that settled within the grace is answered as it settled.
      return timedOut ? { outcome: 'failed', message: `timed out after ${timeoutMs} ms` } : late;
    } finally {
      clearTimeout(timer);
      clearTimeout(grace);
      await progress.close();
    }
  }

  private result(id: string, type: string | undefined, fields: Pick<CommandResult, 'outcome' | 'message'> & Partial<Pick<CommandResult, 'reason' | 'output' | 'startedAt' | 'claimedId'>>): CommandResult {
    return { schema: COMMAND_RESULT_SCHEMA_ID, id, deviceId: this.options.deviceId, ...(type === undefined ? {} : { type }), ...fields, finishedAt: this.now().toISOString() };
  }

  /** Records the final result and queues it, in one batch. */
  private async finish(id: string, entry: LedgerEntry, fields: { outcome: CommandResult['outcome']; message: string; output?: unknown }): Promise<CommandResult['outcome']> {
    try {
      await this.record(id, entry, fields);
      return fields.outcome;
    } catch (err) {
      // Too large for a result (or for the whole outbox): without an answer the command would stay
      // `started` and be reported `interrupted` at the next start, though it ran. It ran: it is
      // answered `failed`, without the output.
      if (fields.output === undefined || !isOutpostError(err, 'PROTOCOL_INVALID')) throw err;
      this.options.log.warn('a command\'s output does not fit in a result; it is answered without it', { id, err });
      await this.record(id, entry, { outcome: 'failed', message: `the command ran, but its output does not fit in a result: ${err.message}`.slice(0, 1024) });
      return 'failed';
    }
  }

  private async record(id: string, entry: LedgerEntry, fields: { outcome: CommandResult['outcome']; message: string; output?: unknown }): Promise<void> {
    const result = this.result(id, entry.type, { ...fields, ...(entry.startedAt ? { startedAt: entry.startedAt } : {}) });
    const encoded = encodeCommandResult(result);
    const batch = this.options.store().batch();
    this.ledger!.record(batch, id, { ...entry, state: 'finished', result: encoded });
    await this.options.outbox().put(answer('result', entry, encoded), batch);
    await batch.commit();
    this.options.log.info('command finished', { id, type: entry.type, outcome: fields.outcome });
  }
}
