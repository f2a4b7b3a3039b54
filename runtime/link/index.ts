/** The device's MQTT link to the fleet broker (session, online flag, retained state, commands in, outbox out). */
export {
  createLink,
  DEFAULT_STOP_TIMEOUT_MS,
  MAX_INBOUND_PACKET_BYTES,
  type Link,
  type LinkOptions,
  type InboxMessage,
  type PublishOptions,
} from './mqtt-link.js';
export type { LinkState, LinkStatus, LinkStatusListener } from './status.js';
export { backoffDelayMs } from './backoff.js';
export { describeLinkError } from './describe-error.js';
export { loadTlsMaterial, type TlsMaterial } from './tls-files.js';
export {
  Outbox,
  outboxClasses,
  OUTBOX_COLLECTION,
  OUTBOX_DROPS_COLLECTION,
  type OutboxClass,
  type OutboxMessage,
  type OutboxEntry,
  type OutboxDrops,
  type OutboxStats,
  type OutboxOptions,
} from './outbox.js';
export {
  startOutboxDrain,
  DEFAULT_DRAIN_RETRY_MS,
  OUTBOX_DROPPED_EVENT_SCHEMA,
  type OutboxDrain,
  type OutboxDrainOptions,
  type OutboxDroppedEvent,
} from './drain.js';
