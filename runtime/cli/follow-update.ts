/**
 * `outpost update apply|install --wait`: follows the update the daemon runs until its verdict, the
 * way `rauc install` and `rpm-ostree upgrade` stay with the operator. The daemon's API is polled;
 * when it goes away (the reboot into the trial, a restart, the rollback's reboot) it is waited for
 * and followed on: on a real gateway the reboot ends this command too, and `--wait` run again in
 * the trial boot follows the probation to its verdict.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isOutpostError } from '../errors.js';
import type { UpdateStatus } from '../update/index.js';
import { updateStatusText } from '../update/status-text.js';

/** How a followed update ended, and the exit code that says so. */
export interface FollowedOutcome {
  /** 0: committed (or nothing was under way); 1: failed, or its trial failed. */
  exitCode: 0 | 1;
  summary: string;
  status: UpdateStatus;
}

export interface FollowOptions {
  poll: () => Promise<UpdateStatus>;
  /** The outcome recorded before this update began: a different one is this update's. */
  since: UpdateStatus['last'];
  /** Rewrites one line (a terminal); without it, each new state is noted on its own line. */
  progress?: (text: string) => void;
  note: (text: string) => void;
  intervalMs?: number;
  /** How long a daemon that went away mid-update (a restart, the rollback's reboot) is waited for. */
  reconnectMs?: number;
}

const sameOutcome = (a: UpdateStatus['last'], b: UpdateStatus['last']): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

function failedTrial(status: UpdateStatus): FollowedOutcome {
  const version = status.release?.version;
  return { exitCode: 1, summary: `release ${version ?? '?'} failed its trial${status.reason ? `: ${status.reason}` : ''}; the gateway goes back to the release before it`, status };
}

function ended(status: UpdateStatus): FollowedOutcome | undefined {
  const last = status.last;
  if (!last) return undefined;
  const why = last.reason ? `: ${last.code ? `${last.code}: ` : ''}${last.reason}` : '';
  if (last.result === 'committed') return { exitCode: 0, summary: `release ${last.version} installed and committed`, status };
  return { exitCode: 1, summary: `release ${last.version} ${last.result === 'rolledBack' ? 'rolled back' : 'failed'}${why}`, status };
}

/**
 * Polls until the update's verdict. Called once the update has started: the daemon not answering
 * is waited for (up to `reconnectMs`); other API errors are thrown.
 */
export async function followUpdate(options: FollowOptions): Promise<FollowedOutcome> {
  const intervalMs = options.intervalMs ?? 1000;
  const reconnectMs = options.reconnectMs ?? 120_000;
  let seen: UpdateStatus | undefined;
  let shown = '';
  let goneSince: number | undefined;
  for (;;) {
    let status: UpdateStatus;
    try {
      status = await options.poll();
    } catch (err) {
      if (!(isOutpostError(err) && err.code === 'API_UNAVAILABLE')) throw err;
      // A reboot (into the trial, or back from it; a quick update may be there before the first
      // poll) or a restart by systemd: wait on the monotonic clock, and follow on.
      if (goneSince === undefined) {
        goneSince = performance.now();
        options.progress?.('');
        options.note(`outpost is not answering (${seen ? updateStatusText(seen) : 'the update started'}); waiting up to ${Math.round(reconnectMs / 1000)} s for it to come back`);
      }
      if (performance.now() - goneSince > reconnectMs) throw err;
      await sleep(intervalMs);
      continue;
    }
    goneSince = undefined;
    seen = status;
    if (status.state === 'rollingBack' || status.state === 'rolledBack') return failedTrial(status);
    if (status.state === 'idle') {
      const outcome = sameOutcome(status.last, options.since) ? undefined : ended(status);
      return outcome ?? { exitCode: 0, summary: `no update under way: ${updateStatusText(status)}`, status };
    }
    const text = updateStatusText(status);
    if (options.progress) options.progress(text);
    else if (status.state !== shown) options.note(text);
    shown = status.state;
    await sleep(intervalMs);
  }
}
