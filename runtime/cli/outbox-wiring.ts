/**
 * The daemon's persistent outbox and its drain to the broker, shared by every domain that sends
 * (command results, access and health events). Loaded only when the config has a broker: a device
 * without one has nowhere to send, and carries none of this code.
 */
import type { Service } from '../lifecycle/index.js';
import type { Logger } from '../logs/index.js';
import type { Store } from '../store/index.js';
import { Outbox, type OutboxStats } from '../link/outbox.js';
import { startOutboxDrain, type OutboxDrain } from '../link/drain.js';
import type { Link } from '../link/mqtt-link.js';

/** What the wiring needs from the daemon. */
export interface OutboxWiringOptions {
  readonly store: () => Store;
  readonly link: Link;
  readonly maxBytes: number;
  readonly log: Logger;
}

/** The outbox's services and the way to it. */
export interface OutboxWiring {
  /** Opens the outbox: starts before every service that stores into it. */
  readonly open: Service;
  /** Sends it: starts after the link. */
  readonly drain: Service;
  /** The open outbox; throws until `open` has started. */
  outbox(): Outbox;
  /** Its counters, or undefined while it is not open. */
  stats(): OutboxStats | undefined;
}

export function outboxWiring(options: OutboxWiringOptions): OutboxWiring {
  const { link, log } = options;
  let outbox: Outbox | undefined;
  let drain: OutboxDrain | undefined;
  const requireOutbox = (): Outbox => {
    if (!outbox) throw new Error('the outbox is not open');
    return outbox;
  };
  return {
    open: {
      name: 'outbox',
      async start() {
        outbox = await Outbox.open(options.store(), { maxBytes: options.maxBytes, log });
      },
      async stop() {
        outbox = undefined;
      },
    },
    drain: {
      name: 'outbox-drain',
      async start() {
        drain = startOutboxDrain({ outbox: requireOutbox(), link, log });
      },
      async stop() {
        await drain?.stop();
        drain = undefined;
      },
    },
    outbox: requireOutbox,
    stats: () => outbox?.stats(),
  };
}
