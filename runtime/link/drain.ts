/**
 * Sends the outbox over the link: while connected, the next entry is published (QoS 1) and acked
 * out of the outbox after its PUBACK, one at a time.
 *
 * Invariants:
 * - At least once, in order within a class: an entry leaves the outbox only after its PUBACK, and
 *   the next is not published before that. A stop or a dropped connection mid-publish leaves the
 *   entry queued, to be sent again (the fleet side dedups results by command id).
 * - No busy loop: with nothing to send, or the link down, the drain sleeps until a message is
 *   stored or the link connects; after a failed publish on a link that still says connected (no
 *   PUBACK in time) it waits `retryMs` or the next connect.
 * - A message the broker refuses (a PUBACK reason code ≥ 0x80: not authorized, topic invalid) is
 *   never accepted on a retry: it is logged at error and removed, so it cannot block the queue.
 * - Drops are reported while the link is up, as one `outbox-dropped` event on the events topic,
 *   queued in the batch that marks the counts reported (Outbox.reportDrops); at most one report is
 *   queued at a time, so a full outbox cannot fill itself with reports.
 */
import { isOutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import { eventsTopic } from '../protocol/index.js';
import type { Link } from './mqtt-link.js';
import type { Outbox, OutboxDrops } from './outbox.js';

/** Schema id of the drop report event. */
export const OUTBOX_DROPPED_EVENT_SCHEMA = 'outpost.event/1';

/** The event that tells the fleet messages were lost for lack of room. */
export interface OutboxDroppedEvent {
  readonly schema: typeof OUTBOX_DROPPED_EVENT_SCHEMA;
  readonly type: 'outbox-dropped';
  /** Per class, the messages dropped since the previous report. */
  readonly dropped: OutboxDrops;
  /** When the report was queued (ISO 8601). */
  readonly at: string;
}

/** Default wait after a publish that failed while the link still said connected. */
export const DEFAULT_DRAIN_RETRY_MS = 5_000;

/** What startOutboxDrain needs. */
export interface OutboxDrainOptions {
  readonly outbox: Outbox;
  readonly link: Pick<Link, 'deviceId' | 'publish' | 'status' | 'onStatus'>;
  readonly log: Logger;
  /** Where drop reports go; default the device's events topic. */
  readonly eventsTopic?: string;
  /** See DEFAULT_DRAIN_RETRY_MS. */
  readonly retryMs?: number;
  readonly now?: () => Date;
}

/** A running drain. */
export interface OutboxDrain {
  /** Stops sending; an entry in flight stays queued. Resolves promptly, without waiting for a PUBACK. */
  stop(): Promise<void>;
}

function anyDrops(dropped: OutboxDrops): boolean {
  return Object.values(dropped).some((n) => n > 0);
}

/** Starts draining `outbox` over `link` in the background. */
export function startOutboxDrain(options: OutboxDrainOptions): OutboxDrain {
  const { outbox, link, log } = options;
  const topic = options.eventsTopic ?? eventsTopic(link.deviceId);
  const retryMs = options.retryMs ?? DEFAULT_DRAIN_RETRY_MS;
  const now = options.now ?? (() => new Date());

  let stopped = false;
  /** Something happened since the loop last looked (a message stored, a connect): look again before sleeping. */
  let stored = true;
  let connected = false;
  let wake: ((why: 'stored' | 'connected' | 'timer' | 'stop') => void) | undefined;
  let stopSignal: () => void = () => undefined;
  const stopping = new Promise<void>((resolve) => (stopSignal = resolve));
  let reportKey: string | undefined;

  const poke = (why: 'stored' | 'connected' | 'timer' | 'stop'): void => {
    if (why === 'stored') stored = true;
    if (why === 'connected') connected = true;
    wake?.(why);
  };
  const offStored = outbox.onStored(() => poke('stored'));
  const offStatus = link.onStatus((s) => {
    if (s.state === 'connected') poke('connected');
  });

  /**
   * Sleeps until a connect, a stop, `ms` (when given) or, with `onStored`, a message stored; returns
   * at once when one of those already happened since the loop last looked.
   */
  const sleep = (options: { ms?: number; onStored: boolean }): Promise<void> =>
    new Promise((resolve) => {
      if (stopped || connected || (options.onStored && stored)) {
        resolve();
        return;
      }
      const timer = options.ms === undefined ? undefined : setTimeout(() => poke('timer'), options.ms);
      wake = (why) => {
        if (why === 'stored' && !options.onStored) return;
        wake = undefined;
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      };
    });

  const reportDrops = async (): Promise<void> => {
    if (!anyDrops(outbox.unreportedDrops())) return;
    if (reportKey !== undefined && (await outbox.has(reportKey))) return;
    reportKey = await outbox.reportDrops((dropped) => {
      const event: OutboxDroppedEvent = { schema: OUTBOX_DROPPED_EVENT_SCHEMA, type: 'outbox-dropped', dropped, at: now().toISOString() };
      return { class: 'event', topic, payload: JSON.stringify(event) };
    });
    if (reportKey !== undefined) log.warn('outbox drops reported to the fleet', { dropped: outbox.stats().dropped });
  };

  /** One step: an entry sent (or removed), nothing to send, or a failure to wait out. */
  const step = async (): Promise<'sent' | 'idle' | 'failed'> => {
    await reportDrops();
    const entry = await outbox.next();
    if (entry === undefined || stopped) return 'idle';
    const correlationData = entry.correlationData === undefined ? undefined : Buffer.from(entry.correlationData, 'base64');
    const sent = link.publish(entry.topic, entry.payload, correlationData === undefined ? {} : { correlationData }).then(
      () => 'acked' as const,
      (err: unknown) => err,
    );
    const outcome = await Promise.race([sent, stopping.then(() => 'stopped' as const)]);
    if (outcome === 'stopped') return 'idle';
    if (outcome === 'acked') {
      await outbox.ack(entry.key, { durable: entry.key === reportKey });
      return 'sent';
    }
    if (isOutpostError(outcome, 'LINK_UNAVAILABLE') && !outcome.transient) {
      log.error('the broker refused an outbox message; it is removed so the queue can move on', { key: entry.key, class: entry.class, topic: entry.topic, reason: outcome.message });
      await outbox.ack(entry.key);
      return 'sent';
    }
    log.debug('outbox publish failed; it is sent again later', { key: entry.key, err: outcome });
    return 'failed';
  };

  const loop = async (): Promise<void> => {
    while (!stopped) {
      stored = false;
      connected = false;
      if (link.status.state !== 'connected') {
        await sleep({ onStored: false });
        continue;
      }
      let result: 'sent' | 'idle' | 'failed';
      try {
        result = await step();
      } catch (err) {
        // The store failed (next, ack, a report): try again later rather than spin on it.
        log.error('outbox drain failed; retrying later', { err, retryMs });
        result = 'failed';
      }
      // After a failure, messages stored meanwhile are no reason to try again at once.
      if (result === 'idle') await sleep({ onStored: true });
      else if (result === 'failed') await sleep({ ms: retryMs, onStored: false });
    }
  };
  const running = loop();

  return {
    async stop() {
      stopped = true;
      offStored();
      offStatus();
      stopSignal();
      poke('stop');
      await running;
    },
  };
}
