/** Updates: the update service (the daemon's entry), booted commit discovery, and release tooling for outpostctl. */
export { readBootedCommit, type BootedCommitSource } from './booted-commit.js';
export { UpdateService, type UpdateStatus, type UpdateServiceOptions } from './service.js';
export { localHost, type UpdateHost, type LocalHostOptions } from './host.js';
export type { Ostree } from './ostree.js';
export type { Deployment } from './ostree-status.js';
export type { BootBackend, BootBackendKind } from './boot/index.js';
export { trustedExportDir } from './trusted-export.js';
export { runningArch } from './select.js';
