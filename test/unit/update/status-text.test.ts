import t from 'tap';
import type { UpdateStatus } from '../../../runtime/update/index.js';
import { runsReleaseBefore, updateStatusText } from '../../../runtime/update/status-text.js';

const base: UpdateStatus = { state: 'idle', release: null, progress: null, reason: null, last: null, installedVersion: 4, installedCommit: null, bootedCommit: null, lastCheck: null, probationLeftSec: null };
const release = { version: 5, commit: 'c'.repeat(64), delta: true };

t.test('STATUS= text for systemctl status: the release, how far, how long left', async (t) => {
  t.equal(updateStatusText(base), 'release 4 running');
  t.equal(updateStatusText({ ...base, installedVersion: 0 }), 'running', 'nothing installed by outpost yet');
  t.equal(updateStatusText({ ...base, state: 'downloading', release, progress: { phase: 'downloading', bytes: 421, total: 1000, rateBps: 9 } }), 'downloading release 5: 42 %');
  t.equal(updateStatusText({ ...base, state: 'downloading', release }), 'downloading release 5', 'a full pull has no byte count');
  t.equal(updateStatusText({ ...base, state: 'probation', release, probationLeftSec: 120 }), 'probation of release 5: 120 s left');
  t.equal(updateStatusText({ ...base, last: { result: 'rolledBack', version: 5, commit: release.commit, reason: 'x', at: '' } }), 'release 4 running; release 5 rolled back');
  const rolledBackFrom5 = { ...base, installedVersion: 5, installedCommit: release.commit, bootedCommit: 'b'.repeat(64) };
  t.equal(updateStatusText({ ...rolledBackFrom5, last: { result: 'rolledBack', version: 5, commit: release.commit, reason: 'rolled back on request', at: '' } }), 'running the release before 5; release 5 rolled back', 'an operator\'s rollback from the committed release');
  // What runs is observed, not read from the last outcome: a later cancelled update does not hide it.
  t.equal(updateStatusText({ ...rolledBackFrom5, last: { result: 'failed', version: 6, commit: 'd'.repeat(64), reason: 'cancelled', at: '' } }), 'running the release before 5; release 6 failed', 'and after a later update that did not install');
  t.equal(updateStatusText({ ...rolledBackFrom5, bootedCommit: release.commit }), 'release 5 running', 'the installed commit is booted');
  t.equal(updateStatusText({ ...base, installedVersion: 5, last: { result: 'rolledBack', version: 5, commit: release.commit, reason: 'rolled back on request', at: '' } }), 'running the release before 5; release 5 rolled back', 'no installed commit kept (an older release committed): the last outcome tells');
  const v6 = { version: 6, commit: 'e'.repeat(64), delta: true };
  t.notOk(runsReleaseBefore({ ...rolledBackFrom5, state: 'probation', release: v6, bootedCommit: v6.commit }), 'on trial the booted commit is the new release\'s: not a rollback');
  t.ok(runsReleaseBefore({ ...rolledBackFrom5, state: 'downloading', release: v6 }), 'while the next one downloads, the release before 5 still runs');
});

t.test('a long or multi-line reason stays one short line', async (t) => {
  const text = updateStatusText({ ...base, state: 'rollingBack', release, reason: `health checks failed:\n${'app did not start '.repeat(30)}` });
  t.notMatch(text, /\n/);
  t.ok(text.length <= 160, `${text.length} characters`);
  t.match(text, /^rolling back release 5: health checks failed: app did not start/);
});
