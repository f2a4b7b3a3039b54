/** Updates: booted commit discovery now; TUF client, downloader, ostree adapter and state machine follow. */
export { readBootedCommit, type BootedCommitSource } from './booted-commit.js';
