/** Signed remote commands: who may send them (from TUF targets), verifying an envelope, making one. */
export {
  COMMAND_ISSUERS_TARGET,
  COMMAND_ISSUERS_SCHEMA_ID,
  MAX_ISSUER_VALIDITY_SEC,
  issuerEntrySchema,
  issuersCustomSchema,
  emptyIssuers,
  issuersFromJson,
  issuersFromTargets,
  type IssuersCustom,
  type CommandIssuer,
  type IssuerSet,
  type IssuersResult,
} from './issuers.js';
export { verifyCommand, verifyEnvelope, acceptedEnvelope, type VerifyContext, type Verdict, type Accepted, type Refused } from './verify.js';
export { newCommand, signCommand, type NewCommand } from './sign.js';
export {
  CommandService,
  DEFAULT_HANDLER_TIMEOUT_MS,
  type CommandServiceOptions,
  type CommandStep,
  type CommandHandler,
  type HandlerContext,
  type InboundMessage,
} from './service.js';
