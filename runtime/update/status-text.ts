/**
 * The one-line summary of an update that `systemctl status outpost` shows (sd_notify STATUS=):
 * what an operator at the console wants to know without asking the API.
 */
import type { UpdateStatus } from './service.js';

/** STATUS= is one line; a long failure reason is for `outpost update status`, not the console. */
const maxLength = 160;

/** `downloading release 5: 42 %`, `probation of release 5: 120 s left`, `release 4 running`. */
export function updateStatusText(status: UpdateStatus): string {
  const text = describe(status).replace(/\s+/g, ' ');
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

/**
 * An operator's rollback leaves the anti-rollback floor at the release it left (update rollback):
 * what is observed says so, whatever happened since: the booted commit is neither the installed
 * one nor the one on trial. Where a release from before the installed commit was kept committed
 * the last update, the last outcome is all there is.
 */
export function runsReleaseBefore(status: Pick<UpdateStatus, 'state' | 'release' | 'installedVersion' | 'installedCommit' | 'bootedCommit' | 'last'>): boolean {
  const { bootedCommit, installedCommit } = status;
  if (installedCommit === null) return status.state === 'idle' && status.last?.result === 'rolledBack' && status.last.version === status.installedVersion;
  return bootedCommit !== null && bootedCommit !== installedCommit && bootedCommit !== status.release?.commit;
}

function describe(status: UpdateStatus): string {
  const version = status.release?.version;
  const release = version === undefined ? 'the release' : `release ${version}`;
  switch (status.state) {
    case 'idle': {
      const running = runsReleaseBefore(status) ? `running the release before ${status.installedVersion}` : status.installedVersion > 0 ? `release ${status.installedVersion} running` : 'running';
      const last = status.last && status.last.result !== 'committed' ? `; release ${status.last.version} ${status.last.result === 'rolledBack' ? 'rolled back' : 'failed'}` : '';
      return `${running}${last}`;
    }
    case 'downloading': {
      const p = status.progress;
      return p && p.total > 0 ? `downloading ${release}: ${Math.floor((100 * p.bytes) / p.total)} %` : `downloading ${release}`;
    }
    case 'downloaded':
    case 'applying':
      return `applying ${release}`;
    case 'deployed':
    case 'rebooting':
      return `rebooting into ${release}`;
    case 'probation':
      return status.probationLeftSec === null ? `probation of ${release}` : `probation of ${release}: ${status.probationLeftSec} s left`;
    case 'committed':
      return `committing ${release}`;
    case 'rollingBack':
    case 'rolledBack':
      return `rolling back ${release}${status.reason ? `: ${status.reason}` : ''}`;
  }
}
