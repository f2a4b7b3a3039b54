import { join } from 'node:path';
import t, { type Test } from 'tap';
import { simulateNeverBoots } from '../../../runtime/update/boot/index.js';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaService, type OtaService, type OtaServiceOptions } from '../../../scripts/world/ota-service.js';
import { until } from '../../../scripts/world/until.js';

async function world(t: Test): Promise<OtaWorld> {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  return ota;
}

async function device(t: Test, ota: OtaWorld, options: OtaServiceOptions): Promise<OtaService> {
  const d = await otaService(ota, options);
  t.teardown(() => d.close());
  return d;
}

t.test('a delta that answers 503 for a while: the service retries on its backoff and converges without a restart', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const deltaPath = `/tuf/targets/deltas/${ota.ostree.commit(1)}-${ota.ostree.commit(2)}`;
  // More refusals than the downloader's own attempts: the update pauses at least once.
  ota.ostree.server.setFault({ pathPrefix: deltaPath, status: 503, times: 8 });
  // The first scheduled check an hour away and a one-hour interval: only the retry can recover.
  const d = await device(t, ota, { update: { checkIntervalSec: 3600 }, schedule: { firstCheckMs: 3_600_000, retryMinMs: 1000, retryMaxMs: 2000 } });
  const service = await d.boot();
  const selection = await service.apply();
  t.equal(selection.release?.version, 2, 'release 2 chosen, as `outpost update apply` would');
  await until('the first pause', async () => (d.logs.some((r) => r.msg === 'update paused; will retry') ? true : undefined), 30_000);
  // Waiting for its retry, nothing runs: an apply still answers with the update under way.
  t.match(await service.apply(), { release: { version: 2 }, inProgress: 'downloading' }, 'apply while it waits for its retry');
  const status = await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length > 0, 30_000);
  t.equal(status.release?.version, 2);
  const deltaRequests = ota.ostree.server.requests.filter((r) => r.path === deltaPath);
  t.same(deltaRequests.map((r) => r.status), [...Array<number>(8).fill(503), 200], 'eight refusals, then the delta');
  const paused = d.logs.filter((r) => r.msg === 'update paused; will retry');
  t.ok(paused.length >= 1, `the update paused (${paused.length} times) and was resumed by the schedule`);
  t.ok(paused.every((r) => typeof r.retryInSec === 'number' && r.retryInSec <= 2), 'on the backoff, not the check interval');
  t.notOk(d.logs.some((r) => (r.err as { code?: string } | undefined)?.code === 'UPDATE_BUSY'), 'no tick was refused as busy');

  // The trial boot: the next service commits the release.
  await d.boot();
  const final = await d.waitFor('the commit', (s) => s.state === 'idle' && s.last !== null, 30_000);
  t.match(final.last, { result: 'committed', version: 2 });
});

/** A timer the test fires by hand: what the service asked for, and nothing runs by itself. */
function manualTimer() {
  const armed: { ms: number; fn: () => void; live: boolean }[] = [];
  return {
    armed,
    timer: (fn: () => void, ms: number) => {
      const entry = { ms, fn, live: true };
      armed.push(entry);
      return () => void (entry.live = false);
    },
    /** Fires the live timer and resolves with the delay of the one the tick arms next. */
    async fire(): Promise<number> {
      const live = armed.filter((e) => e.live);
      const entry = live[live.length - 1];
      if (!entry || live.length !== 1) throw new Error(`expected one armed timer, found ${live.length}`);
      entry.live = false;
      const before = armed.length;
      entry.fn();
      const next = await until('the tick to arm the next timer', () => (armed.length > before ? armed[armed.length - 1] : undefined), 30_000);
      return next.ms;
    },
  };
}

t.test('a scheduled check that fails is retried on a capped backoff with jitter, not after the interval; a check that works resets it', async (t) => {
  const ota = await world(t);
  const clock = manualTimer();
  // Defaults (30 s doubling, capped at 10 min), with the jitter at its midpoint: 3/4 of each step.
  const d = await device(t, ota, { update: { checkIntervalSec: 3600 }, schedule: { random: () => 0.5, timer: clock.timer } });
  await d.boot();
  t.same(clock.armed.map((e) => e.ms), [5_000], 'first check 5 s after start');
  ota.ostree.server.setFault({ pathPrefix: '/tuf/timestamp.json', status: 503 });
  const failing: number[] = [];
  for (let i = 0; i < 7; i++) failing.push(await clock.fire());
  t.same(failing, [22_500, 45_000, 90_000, 180_000, 360_000, 450_000, 450_000], 'doubling from 30 s, capped at 10 min, jittered');
  const failed = d.logs.filter((r) => r.msg === 'update check failed');
  t.equal(failed.length, 7);
  t.match(failed[0], { transient: true, retryInSec: 23, err: { code: 'UPDATE_UNAVAILABLE' } });
  ota.ostree.server.setFault(null);
  t.equal(await clock.fire(), 3_600_000, 'after a check that works: the interval');
  t.match(d.logs.filter((r) => r.msg === 'update check').at(-1), { result: /no release/ });
  ota.ostree.server.setFault({ pathPrefix: '/tuf/timestamp.json', status: 503 });
  t.equal(await clock.fire(), 22_500, 'the next failure starts from 30 s again');
});

t.test('fetch limits from the config reach every check: a stalled metadata file and a stalled check end at their deadlines', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  ota.ostree.server.setFault({ pathPrefix: '/tuf/timestamp.json', delayMs: 4000 });
  const perFile = await device(t, ota, { update: { metadataDeadlineSec: 1, checkDeadlineSec: 60 }, schedule: { firstCheckMs: 3_600_000 } });
  const service = await perFile.boot();
  await t.rejects(service.check(), { code: 'UPDATE_UNAVAILABLE', message: /exceeded the 1000 ms deadline for one metadata file \(update\.metadataDeadlineSec\)/ });
  await perFile.close();
  const whole = await device(t, ota, { update: { metadataDeadlineSec: 30, checkDeadlineSec: 1 }, schedule: { firstCheckMs: 3_600_000 } });
  const again = await whole.boot();
  await t.rejects(again.check(), { code: 'UPDATE_UNAVAILABLE', transient: true, message: /the update check exceeded its 1 s deadline \(update\.checkDeadlineSec\)/ });
});

t.test('a deferred release is checked again when its backoff ends, not a whole check interval later', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const clock = manualTimer();
  // CLOCK_MONOTONIC as the test moves it: the backoff passes without waiting for it.
  let aheadMs = 0;
  const monotonic = { now: () => new Date(), monotonicMs: () => Math.round(performance.now()) + aheadMs };
  const d = await device(t, ota, { update: { checkIntervalSec: 3600, deferral: { backoffSec: 120 } }, schedule: { random: () => 0.5, timer: clock.timer }, service: { clock: monotonic } });
  await simulateNeverBoots(join(d.stateDir, 'simulated-boot.json'), ota.ostree.commit(2));
  const service = await d.boot();
  t.equal((await service.apply()).release?.version, 2);
  await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length === 1, 30_000);
  // The bootloader falls back from release 2 without a hang seen: deferred (power loss?).
  await d.boot();
  const fellBack = await d.waitFor('the fallback', (s) => s.state === 'idle' && s.last !== null, 30_000);
  t.match(fellBack.last, { result: 'rolledBack', version: 2, reason: /offered again in 2 min \(trial 1 of 3\)/ });
  const next = await clock.fire();
  t.match(d.logs.filter((r) => r.msg === 'update check').at(-1), { result: /release 2 is offered again in 2 min/ });
  t.ok(next > 100_000 && next <= 121_000, `the next check comes as the backoff ends (${next} ms), not after the 1 h interval`);
  aheadMs += next;
  await clock.fire();
  await d.waitFor('the second trial reboot', (s) => s.state === 'rebooting' && d.reboots.length === 2, 30_000);
  t.match(d.logs.filter((r) => r.msg === 'update check').at(-1), { result: 'installing release 2' }, 'offered again: its second trial');
});

t.test('asked while a scheduled update downloads, check and apply answer at once (what is being installed) instead of queueing behind the install', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const deltaPath = `/tuf/targets/deltas/${ota.ostree.commit(1)}-${ota.ostree.commit(2)}`;
  // The delta's server stalls before its headers: the scheduled update sits in downloading.
  ota.ostree.server.setFault({ pathPrefix: deltaPath, delayMs: 20_000, times: 1 });
  const d = await device(t, ota, { schedule: { firstCheckMs: 0 } });
  const service = await d.boot();
  const held = await until('the delta request held by the server', async () => ota.ostree.server.requests.find((r) => r.path === deltaPath && r.status === 0), 30_000);
  const [check, apply] = await Promise.allSettled([service.check(), service.apply()]);
  t.equal(held.status, 0, 'both answered while the delta was still held');
  t.match(check, { status: 'fulfilled', value: { release: null, reason: 'an update to release 2 is under way (downloading)' } }, 'check: what is under way');
  t.match(apply, { status: 'fulfilled', value: { release: { version: 2 }, inProgress: 'downloading' } }, 'apply: what it asked for is under way');
  await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length === 1, 60_000);
});
