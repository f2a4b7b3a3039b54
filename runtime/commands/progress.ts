/**
 * A running command's progress, as `outpost.command-progress/1` events on the device's events
 * topic (docs/protocol.md).
 *
 * Invariants:
 * - At most one event per {@link PROGRESS_INTERVAL_MS} per run, the last report of an interval
 *   replacing the ones before it: a handler may report every step without filling the outbox.
 * - Queued in the outbox's `event` class, below results: progress never pushes a result out.
 * - Nothing is queued once the run ended, and `close()` resolves only after what was queued
 *   before is written: nothing of a run follows its result into the store, and a handler that
 *   outlives its timeout cannot report on a command already answered.
 */
import type { Outbox } from '../link/index.js';
import type { Logger } from '../logs/index.js';
import { COMMAND_PROGRESS_MESSAGE_MAX_CHARS, COMMAND_PROGRESS_SCHEMA_ID, encodeCommandProgress, eventsTopic, type CommandSigned } from '../protocol/index.js';

const PROGRESS_INTERVAL_MS = 1_000;

interface ProgressOptions {
  readonly command: CommandSigned;
  readonly deviceId: string;
  readonly outbox: () => Outbox;
  readonly now: () => Date;
  readonly log: Logger;
}

/** One run's progress events. */
export class ProgressReporter {
  /** When the last event was queued, on the monotonic clock (the wall clock may jump). */
  #lastAt = -Infinity;
  #pending: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #writes: Promise<void> = Promise.resolve();

  constructor(private readonly options: ProgressOptions) {}

  /** Throws `PROTOCOL_INVALID` for a fraction outside [0, 1]: the handler's bug, shown at its call. */
  report(fraction?: number, message?: string): void {
    if (this.#closed) return;
    const { command, deviceId, now } = this.options;
    this.#pending = encodeCommandProgress({
      schema: COMMAND_PROGRESS_SCHEMA_ID,
      id: command.id,
      deviceId,
      type: command.type,
      ...(fraction === undefined ? {} : { fraction }),
      ...(message === undefined ? {} : { message: message.slice(0, COMMAND_PROGRESS_MESSAGE_MAX_CHARS) }),
      at: now().toISOString(),
    });
    if (this.#timer !== undefined) return;
    const wait = this.#lastAt + PROGRESS_INTERVAL_MS - performance.now();
    if (wait <= 0) this.#queue();
    else this.#timer = setTimeout(() => this.#queue(), wait);
  }

  /** Ends reporting (a report not yet queued is dropped: the result supersedes it). */
  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    return this.#writes;
  }

  #queue(): void {
    this.#timer = undefined;
    const payload = this.#pending;
    this.#pending = undefined;
    if (payload === undefined || this.#closed) return;
    this.#lastAt = performance.now();
    const { outbox, deviceId, command, log } = this.options;
    this.#writes = this.#writes
      .then(() => outbox().put({ class: 'event', topic: eventsTopic(deviceId), payload }))
      .catch((err: unknown) => log.warn('a command\'s progress could not be queued', { id: command.id, err }));
  }
}
