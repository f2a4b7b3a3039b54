import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthScheduler, nextState, type CheckRun, type CheckState, type ScheduledCheck } from '../../../runtime/health/scheduler.js';
import type { CheckOutcome, CheckProbe } from '../../../runtime/health/probe.js';
import { systemClock } from '../../../runtime/platform/index.js';

const unknown: CheckState = { name: 'c', severity: 'wanted', status: 'unknown', since: 't0', streak: 0 };

function runAll(check: Pick<ScheduledCheck, 'failAfter' | 'recoverAfter'>, oks: boolean[]): CheckState['status'][] {
  let state = unknown;
  return oks.map((ok, i) => {
    state = nextState(check, state, { ok }, `t${i + 1}`);
    return state.status;
  });
}

t.test('a flapping check is damped: it fails only after failAfter failures in a row and recovers after recoverAfter passes in a row', async (t) => {
  const damped = { failAfter: 3, recoverAfter: 2 };
  t.same(runAll(damped, [true, false, true, false, false, true, false, false]), ['passing', 'passing', 'passing', 'passing', 'passing', 'passing', 'passing', 'passing'], 'alternating failures never fail it');
  t.same(runAll(damped, [true, false, false, false, true, false, true, true]), ['passing', 'passing', 'passing', 'failing', 'failing', 'failing', 'failing', 'passing'], 'three in a row fail it; two passes in a row bring it back');
  t.same(runAll(damped, [false, false, false]), ['unknown', 'unknown', 'failing'], 'unknown until the first verdict');
  t.same(runAll({ failAfter: 1, recoverAfter: 1 }, [false, true, false]), ['failing', 'passing', 'failing'], 'undamped');
});

t.test('since moves only when the status changes; detail and measurements are the last run\'s', async (t) => {
  let state = nextState({ failAfter: 1, recoverAfter: 1 }, unknown, { ok: false, detail: 'hot', measurements: { celsius: 90 } }, 'a');
  state = nextState({ failAfter: 1, recoverAfter: 1 }, state, { ok: false, detail: 'hotter', measurements: { celsius: 95 } }, 'b');
  t.match(state, { status: 'failing', since: 'a', lastRunAt: 'b', detail: 'hotter', measurements: { celsius: 95 }, streak: 2 });
});

function check(name: string, probe: CheckProbe, overrides: Partial<ScheduledCheck> = {}): ScheduledCheck {
  return { name, severity: 'required', intervalMs: 20, timeoutMs: 200, failAfter: 1, recoverAfter: 1, probe, ...overrides };
}

t.test('a check never overlaps itself: the next run is timed from the end of the last', async (t) => {
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  const slow: CheckProbe = {
    async run() {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(60);
      running--;
      runs++;
      return { ok: true };
    },
  };
  const scheduler = new HealthScheduler({ checks: [check('slow', slow, { intervalMs: 5 })], clock: systemClock, onRun: () => undefined, staggerMs: 0 });
  scheduler.start();
  await sleep(400);
  await scheduler.stop();
  t.equal(maxRunning, 1, 'one run at a time');
  t.ok(runs >= 3 && runs <= 7, `runs follow each other (${runs})`);
});

t.test('a hung probe is aborted at its timeout and the run fails with why; the scheduler is stuck only on a probe ignoring its signal', async (t) => {
  const runs: CheckRun[] = [];
  let aborted = 0;
  const hung: CheckProbe = {
    run: (signal) =>
      new Promise<CheckOutcome>((resolve) => {
        signal.addEventListener('abort', () => {
          aborted++;
          resolve({ ok: true, detail: 'answered after the abort' });
        });
      }),
  };
  const scheduler = new HealthScheduler({ checks: [check('hung', hung, { timeoutMs: 50, intervalMs: 1000 })], clock: systemClock, onRun: (run) => void runs.push(run), staggerMs: 0 });
  scheduler.start();
  await sleep(150);
  t.equal(aborted, 1);
  t.equal(runs.length, 1);
  t.match(runs[0], { outcome: { ok: false, detail: 'timed out after 50 ms' }, state: { status: 'failing' }, changedFrom: 'unknown' });
  t.same(scheduler.stuck(), []);
  await scheduler.stop();

  let nowMs = 0;
  const deaf: CheckProbe = { run: () => new Promise<CheckOutcome>(() => undefined) };
  const stuck = new HealthScheduler({ checks: [check('deaf', deaf, { timeoutMs: 50 })], clock: { now: () => new Date(), monotonicMs: () => nowMs }, onRun: () => undefined, staggerMs: 0 });
  stuck.start();
  await sleep(20);
  nowMs = 50 + 9_000;
  t.same(stuck.stuck(), [], 'within the grace');
  nowMs = 50 + 11_000;
  t.same(stuck.stuck(), ['deaf'], 'named once past its timeout and the grace');
});

t.test('a probe that throws fails its run with the message; onRun failing does not stop the check', async (t) => {
  const runs: CheckRun[] = [];
  const throwing: CheckProbe = {
    async run() {
      throw new Error('cannot read /proc/meminfo');
    },
  };
  const scheduler = new HealthScheduler({
    checks: [check('boom', throwing)],
    clock: systemClock,
    onRun: (run) => {
      runs.push(run);
      throw new Error('reporting broke');
    },
    staggerMs: 0,
  });
  scheduler.start();
  await sleep(150);
  await scheduler.stop();
  t.ok(runs.length >= 2, `kept running (${runs.length})`);
  t.match(runs[0]?.outcome, { ok: false, detail: 'cannot read /proc/meminfo' });
  t.equal(runs[1]?.changedFrom, undefined, 'only a change of status is a transition');
});

t.test('stop aborts a running probe and no run is reported after it', async (t) => {
  const runs: CheckRun[] = [];
  let signalled = false;
  const long: CheckProbe = {
    run: (signal) =>
      new Promise<CheckOutcome>((resolve) => {
        signal.addEventListener('abort', () => {
          signalled = true;
          resolve({ ok: false, detail: 'aborted' });
        });
      }),
  };
  const scheduler = new HealthScheduler({ checks: [check('long', long, { timeoutMs: 10_000 })], clock: systemClock, onRun: (run) => void runs.push(run), staggerMs: 0 });
  scheduler.start();
  await sleep(20);
  await scheduler.stop();
  t.ok(signalled);
  t.equal(runs.length, 0);
});

t.test('runNow runs a check at once as a run of its schedule, or waits for the run under way: never two at once', async (t) => {
  let running = 0;
  let maxRunning = 0;
  let runs = 0;
  const probe: CheckProbe = {
    async run() {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(50);
      running--;
      runs++;
      return { ok: runs > 1, detail: `run ${runs}` };
    },
  };
  const seen: CheckRun[] = [];
  const scheduler = new HealthScheduler({ checks: [check('app', probe, { intervalMs: 60_000 })], clock: systemClock, onRun: (run) => void seen.push(run), staggerMs: 0 });
  scheduler.start();
  await sleep(10);
  const [during, alsoDuring] = await Promise.all([scheduler.runNow('app'), scheduler.runNow('app')]);
  t.same([during, alsoDuring], [{ ok: false, detail: 'run 1' }, { ok: false, detail: 'run 1' }], 'both waited for the scheduled run under way');
  t.match(await scheduler.runNow('app'), { ok: true, detail: 'run 2' }, 'an idle check runs at once, not after its 60 s interval');
  t.equal(maxRunning, 1);
  t.same(seen.map((r) => r.state.status), ['failing', 'passing'], 'its runs are the schedule\'s: state and transitions follow');
  t.match(await scheduler.runNow('nope'), { ok: false, detail: 'no health check is named nope' });
  await scheduler.stop();
  t.match(await scheduler.runNow('app'), { ok: false, detail: 'outpost is stopping' });
});
