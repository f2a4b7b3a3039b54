import t from 'tap';
import { OutpostError } from '../../../runtime/errors.js';
import { followUpdate } from '../../../runtime/cli/follow-update.js';
import type { UpdateStatus } from '../../../runtime/update/index.js';

const commit = 'a'.repeat(64);
const base: UpdateStatus = { state: 'idle', release: null, progress: null, reason: null, last: null, installedVersion: 1, installedCommit: commit, bootedCommit: commit, lastCheck: null, probationLeftSec: null };
const gone = new OutpostError('API_UNAVAILABLE', 'cannot reach outpost');

/** A daemon that answers with `script` in turn (an Error is thrown), then the last entry forever. */
function scripted(script: (UpdateStatus | Error)[]): () => Promise<UpdateStatus> {
  let i = 0;
  return async () => {
    const next = script[Math.min(i++, script.length - 1)];
    if (next instanceof Error) throw next;
    return next as UpdateStatus;
  };
}

const release = { version: 2, commit, delta: true };
const downloading: UpdateStatus = { ...base, state: 'downloading', release, progress: { phase: 'delta', bytes: 50, total: 100, rateBps: 10 } };
const committed: UpdateStatus = { ...base, installedVersion: 2, last: { result: 'committed', version: 2, commit, reason: null, at: '2026-12-06T00:00:00Z' } };

t.test('committed after a restart of the daemon: exit 0; progress rewrites one line on a terminal', async (t) => {
  const shown: string[] = [];
  const notes: string[] = [];
  const outcome = await followUpdate({ poll: scripted([downloading, gone, gone, committed]), since: null, progress: (s) => shown.push(s), note: (s) => notes.push(s), intervalMs: 1 });
  t.equal(outcome.exitCode, 0);
  t.equal(outcome.summary, 'release 2 installed and committed');
  t.same(shown, ['downloading release 2: 50 %', ''], 'the line cleared before the note');
  t.match(notes, [/^outpost is not answering \(downloading release 2: 50 %\); waiting/], 'one note for the whole outage');
});

t.test('a failed trial or attempt: exit 1 with the reason; the outcome from before the update is not its verdict', async (t) => {
  const rollingBack: UpdateStatus = { ...base, state: 'rollingBack', release, reason: 'health checks failed during probation: app' };
  const outcome = await followUpdate({ poll: scripted([downloading, rollingBack]), since: committed.last, note: () => undefined, intervalMs: 1 });
  t.equal(outcome.exitCode, 1);
  t.match(outcome.summary, /^release 2 failed its trial: health checks failed during probation: app;/);
  const failed = { ...base, last: { result: 'failed' as const, version: 2, commit, reason: 'signature mismatch', code: 'DOWNLOAD_VERIFY', at: '2026-12-06T00:00:01Z' } };
  t.equal((await followUpdate({ poll: scripted([downloading, failed]), since: committed.last, note: () => undefined, intervalMs: 1 })).summary, 'release 2 failed: DOWNLOAD_VERIFY: signature mismatch');
  const idle = await followUpdate({ poll: scripted([committed]), since: committed.last, note: () => undefined, intervalMs: 1 });
  t.same([idle.exitCode, idle.summary], [0, 'no update under way: release 2 running']);
});

t.test('gone at the first poll (a quick update already rebooting) is waited for too; gone for longer than the wait: the API error', async (t) => {
  t.equal((await followUpdate({ poll: scripted([gone, committed]), since: null, note: () => undefined, intervalMs: 1 })).exitCode, 0);
  await t.rejects(followUpdate({ poll: scripted([downloading, gone]), since: null, note: () => undefined, intervalMs: 5, reconnectMs: 30 }), { code: 'API_UNAVAILABLE' });
  await t.rejects(followUpdate({ poll: scripted([downloading, new OutpostError('API_FORBIDDEN', 'no')]), since: null, note: () => undefined, intervalMs: 1 }), { code: 'API_FORBIDDEN' }, 'other errors end it at once');
});
