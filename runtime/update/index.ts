/** Updates: booted commit discovery now; TUF client, downloader, ostree adapter and state machine follow. */
export { readBootedCommit, type BootedCommitSource } from './booted-commit.js';
export { createOstree, isCommitChecksum, type DeployOptions, type Ostree, type OstreeOptions } from './ostree.js';
export { parseAdminStatus, type Deployment, type DeploymentRef } from './ostree-status.js';
export { flushBoot, type FlushHost, type FlushResult } from './flush-boot.js';
export { commitTree, generateStaticDelta, initRepo, revParse, type CommitTreeOptions, type StaticDeltaOptions } from './ostree-release.js';
export { createDownloader, type Downloader, type DownloaderOptions, type DownloadProgress, type DownloadRequest, type DownloadResult, type StatFs } from './download.js';
export { createTokenBucket, type TokenBucket } from './token-bucket.js';
