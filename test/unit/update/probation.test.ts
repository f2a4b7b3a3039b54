import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../../runtime/store/index.js';
import { ProbationWindows, predicateCheck, runProbation } from '../../../runtime/update/probation.js';

/** A clock only the sleeps move. */
function fakeTime() {
  let ms = 1_000;
  return { nowMs: () => ms, sleep: async (d: number) => void (ms += d) };
}

t.test('runProbation: all checks must pass in one round before the deadline on its own clock', async (t) => {
  const time = fakeTime();
  let round = 0;
  const late = predicateCheck('app', () => ++round >= 3, 'not up yet');
  t.same(await runProbation([late, predicateCheck('outpost', () => true, '')], { deadlineMs: 4_000, intervalMs: 1_000, ...time }), { ok: true });
  t.equal(time.nowMs(), 3_000, 'passed in the third round');

  const never = predicateCheck('app', () => false, 'exit 1');
  t.same(await runProbation([never], { deadlineMs: time.nowMs() + 2_500, intervalMs: 1_000, ...time }), { ok: false, reason: 'health checks failed during probation: app (exit 1)' });
  t.equal(time.nowMs(), 5_500, 'the last round ran at the deadline, not after another interval');
});

t.test('runProbation: outpost stopping gives no verdict: the run rejects with the stop\'s reason, also when the window has ended meanwhile', async (t) => {
  const time = fakeTime();
  const stopping = new AbortController();
  let rounds = 0;
  const failsWhileGoingDown = predicateCheck('app', () => (++rounds === 2 && stopping.abort(new Error('outpost is stopping')), false), 'connection refused');
  await t.rejects(runProbation([failsWhileGoingDown], { deadlineMs: 2_000, intervalMs: 1_000, ...time, signal: stopping.signal }), { message: 'outpost is stopping' });
  t.equal(rounds, 2, 'no round after the stop');
});

t.test('ProbationWindows: the first call in a boot records the start; the same trial and boot read it back; another boot or commit starts anew', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-probation-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let now = 50_000;
  const open = () => Store.open({ location: join(dir, 'store'), version: 1 });
  let store = await open();
  t.equal(await new ProbationWindows(store, () => now).startMs('c2', 'boot-a'), 50_000);
  now = 90_000;
  await store.close();
  store = await open();
  const windows = new ProbationWindows(store, () => now);
  t.equal(await windows.startMs('c2', 'boot-a'), 50_000, 'a restart of outpost in the same boot keeps the window');
  t.equal(await windows.startMs('c2', 'boot-b'), 90_000, 'a new boot (power lost during the trial) starts it again');
  t.equal(await windows.startMs('c3', 'boot-b'), 90_000, 'another release starts its own');
  now = 95_000;
  t.equal(await windows.startMs('c3', 'boot-b'), 90_000);
  await store.close();
});
