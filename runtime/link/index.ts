/** The device's MQTT link to the fleet broker (session, online flag, retained state). */
export { createLink, SESSION_EXPIRY_SEC, DEFAULT_STOP_TIMEOUT_MS, type Link, type LinkOptions } from './mqtt-link.js';
export type { LinkState, LinkStatus, LinkStatusListener } from './status.js';
export { backoffDelayMs } from './backoff.js';
export { describeLinkError } from './describe-error.js';
export { loadTlsMaterial, type TlsMaterial } from './tls-files.js';
