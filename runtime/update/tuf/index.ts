/**
 * TUF 1.0 for outpost: the device client (spec §5 workflow), the repository writer `outpostctl`
 * uses, metadata schemas, and outpost's release/delta target conventions.
 */
export { TufClient, TUF_COLLECTION, storedRole, type Fetcher, type TufClientOptions } from './client.js';
export { TrustedTargets, type TargetInfo } from './trusted-targets.js';
export {
  initRepository,
  openRepository,
  Repository,
  defaultExpiryMs,
  type InitRepositoryOptions,
  type PublishOptions,
  type PublishResult,
  type SigningKeys,
  type TargetInput,
} from './writer.js';
export { signMetadata, serializeMetadata, type Envelope } from './sign.js';
export { parseDurationMs } from './duration.js';
export {
  parseMetadata,
  isExpired,
  topRoles,
  defaultMetadataMaxBytes,
  SPEC_VERSION,
  targetNameSchema,
  type TopRole,
  type ParsedMetadata,
  type RootSigned,
  type TimestampSigned,
  type SnapshotSigned,
  type TargetsSigned,
  type TargetFile,
  type MetaFile,
} from './schema.js';
export { checkMetaFile, countValidSignatures, requireThreshold } from './verify.js';
export {
  releaseCustomSchema,
  deltaCustomSchema,
  hardwareClassSchema,
  releaseArches,
  releaseTargetName,
  deltaTargetName,
  parseRelease,
  releasesFor,
  releaseTargetsFor,
  type ReleaseCustom,
  type DeltaCustom,
  type ReleaseArch,
  type Release,
} from './release.js';
