/** Updates: the update service (the daemon's entry), booted commit discovery, and release tooling for outpostctl. */
export { readBootedCommit, type BootedCommitSource } from './booted-commit.js';
export { UpdateService, type UpdateStatus, type UpdateServiceOptions } from './service.js';
