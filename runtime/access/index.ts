/** Just-in-time remote access: key grants with expiry, their end, reverse tunnels; the root-side port. */
export {
  ACCESS_KEY_TYPES,
  PRINCIPAL_PATTERN,
  parsePublicKey,
  checkFromPatterns,
  authorizedKeyLine,
  parseAuthorizedKeyLine,
  renderAuthorizedKeys,
  expiryTimeOption,
  fingerprintOf,
  type AccessKeyType,
  type AuthorizedKeyEntry,
  type PublicKey,
} from './keys.js';
export { localAccessHost, localUid, type AccessEntry, type AccessHost, type AccessRefusal, type AccessSession, type LocalAccessHostOptions } from './host.js';
export { resumeGrant, checkpointRemaining, CHECKPOINT_MS, GRANTS_COLLECTION, type GrantRecord, type Resumed } from './grants.js';
export { tunnelArgs, ensureTunnelKey, type TunnelTarget } from './tunnel.js';
export {
  AccessService,
  ACCESS_EVENT_SCHEMA,
  accessSettings,
  fingerprintSchema,
  MAX_ACTIVE_GRANTS,
  type AccessServiceOptions,
  type AccessSettings,
  type GrantOutcome,
  type GrantRequest,
  type RevokeSelector,
} from './service.js';
