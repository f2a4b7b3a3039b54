import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Exec } from '../../../runtime/platform/index.js';
import { monotonicMs } from '../../../runtime/platform/index.js';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaService, type OtaService } from '../../../scripts/world/ota-service.js';

const year = 365 * 86_400_000;

/**
 * A device whose wall clock the test moves, as a first NTP sync moves it on a gateway without an
 * RTC, and whose one probation check ("app") fails twice before it passes, like an app that needs
 * a few seconds after boot. Writing `bad` to `mode` makes the check fail for good. `onCheck` runs
 * before each check, with the number of the run.
 */
async function device(t: Test, ota: OtaWorld, windowSec: number) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-clock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const runs = join(dir, 'runs');
  const mode = join(dir, 'mode');
  writeFileSync(mode, 'good');
  const script = `n=$(cat ${runs} 2>/dev/null || echo 0); echo $((n+1)) > ${runs}; [ "$(cat ${mode})" = good ] && [ "$n" -ge 2 ]`;
  const state = { wallOffsetMs: 0, checks: 0, onCheck: (_run: number): void => undefined };
  const watch = (exec: Exec): Exec => ({
    run: (cmd, args, options) => {
      if (args.includes(script)) state.onCheck(++state.checks);
      return exec.run(cmd, args, options);
    },
  });
  const d = await otaService(ota, {
    update: { checkIntervalSec: 3600, probation: { windowSec, intervalSec: 1, checks: [{ name: 'app', command: ['/bin/sh', '-c', script] }] } },
    // No scheduled check during the test: the TUF refresh would judge expiry by the jumped clock.
    schedule: { firstCheckMs: 3_600_000 },
    exec: watch,
    service: { clock: { now: () => new Date(Date.now() + state.wallOffsetMs), monotonicMs } },
  });
  t.teardown(() => d.close());
  const newTrial = (): void => {
    rmSync(runs, { force: true });
    state.checks = 0;
  };
  return { d, state, mode, newTrial };
}

/** Applies the newest release and boots into its trial; resolves once the trial boot's service runs. */
async function applyAndReboot(d: OtaService): Promise<void> {
  const reboots = d.reboots.length;
  await d.boot();
  const selection = await d.service.apply();
  if (!selection.release) throw new Error(`nothing to apply: ${selection.reason}`);
  await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length > reboots);
  await d.boot();
}

t.test('the wall clock jumps a year forward, then another release a year back, mid-probation: both releases commit and the service stays healthy', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  const { d, state, newTrial } = await device(t, ota, 6);
  const healthy: boolean[] = [];

  for (const [version, jumpMs] of [[2, year], [3, -year]] as const) {
    await ota.release(version, { deltaFrom: [version - 1] });
    state.wallOffsetMs = 0;
    newTrial();
    // After the first failing round: the sync lands while the app is still starting.
    state.onCheck = (run) => {
      if (run === 2) state.wallOffsetMs = jumpMs;
      if (run >= 2) healthy.push(d.service.healthy());
    };
    await applyAndReboot(d);
    const status = await d.waitFor(`release ${version} to settle`, (s) => (s.state === 'idle' && s.last?.version === version) || s.state === 'rollingBack');
    t.match(status, { state: 'idle', last: { result: 'committed', version } }, `release ${version} committed though the wall clock moved ${jumpMs > 0 ? 'forward' : 'back'} a year`);
    t.equal(state.checks, 3, `release ${version}: judged by its third round, as without the jump`);
    t.ok(d.service.healthy(), `release ${version}: healthy after the jump`);
  }
  t.same(healthy, [true, true, true, true], 'the stall detector never saw the jump as a stall');
});

t.test('the wall clock jumps a year back mid-probation: a release that fails its check still rolls back when its window ends', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  const windowSec = 3;
  const { d, state, mode } = await device(t, ota, windowSec);
  writeFileSync(mode, 'bad');
  await ota.release(2, { deltaFrom: [1] });
  let firstCheckAt = 0;
  state.onCheck = (run) => {
    if (run === 1) firstCheckAt = monotonicMs();
    if (run === 2) state.wallOffsetMs = -year;
  };
  await applyAndReboot(d);
  const status = await d.waitFor('the rollback', (s) => s.state === 'rollingBack' && d.reboots.length === 2, (windowSec + 10) * 1000);
  t.match(status.reason, /health checks failed during probation: app/);
  const tookMs = monotonicMs() - firstCheckAt;
  t.ok(tookMs < (windowSec + 3) * 1000, `rolled back ${tookMs} ms after probation began (window ${windowSec} s)`);
});
