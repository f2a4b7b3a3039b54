import t, { type Test } from 'tap';
import { z } from 'zod';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OutpostError } from '../../../runtime/errors.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { Store } from '../../../runtime/store/index.js';
import { simulatedBoot, simulateNeverBoots, simulateReset } from '../../../runtime/update/boot/index.js';
import { UpdateMachine, UpdateStore, updateUnderWay, type StepResult } from '../../../runtime/update/machine.js';
import { defaultRetryPolicy } from '../../../runtime/update/deferral.js';
import { createSteps } from '../../../runtime/update/steps.js';
import { initialRecord, type Release, type UpdateRecord } from '../../../runtime/update/record.js';
import type { Ostree } from '../../../runtime/update/ostree.js';
import { fakeOstree } from '../../fixtures/fake-ostree.js';

const v1 = '1'.repeat(64);
const v2 = '2'.repeat(64);
const release: Release = { target: 'releases/gw/x86_64/2', version: 2, commit: v2, ref: 'os/stable', arch: 'x86_64', hardware: 'gw', delta: { target: `deltas/${v1}-${v2}`, from: v1, length: 10, sha256: 'a'.repeat(64) } };

const trialOfV2 = { commit: v2, bootVersion: 1 } as const;

/** One device: real store, real simulated bootloader (state file), fake ostree and downloader. */
async function device(t: Test, options: { healthy?: () => boolean; crashAt?: number; deployFailsAfterSwap?: boolean; deployFails?: 'permanent' | 'transient'; cancelSignal?: AbortSignal } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-machine-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'boot.json');
  let reboots = 0;
  let ostree: Ostree & { state: { deployed: string[]; calls: string[]; refs: Map<string, string> } };
  const boot = simulatedBoot({ stateFile, trialBoots: 2, menu: async () => ostree.state.deployed, onReboot: () => void reboots++ });
  ostree = fakeOstree(v1, () => boot.bootedCommit());
  await boot.boot();
  let calls = 0;
  /** Counts side effects; at `crashAt` the process "dies" right after the effect, before any save. */
  const effect = async <T>(fn: () => Promise<T>): Promise<T> => {
    const result = await fn();
    calls += 1;
    if (calls === options.crashAt) throw new OutpostError('INTERNAL', 'simulated kill -9', { transient: true });
    return result;
  };
  /** Boot-config swaps other than the trial's deploy made while the counter was armed (must stay empty). */
  const armedSwaps: string[] = [];
  const noteArmedSwap = async (what: string) => {
    if ((await boot.trialState()).armed) armedSwaps.push(what);
  };
  const wrapped: Ostree = { ...ostree, applyStaticDelta: (f, o) => effect(() => ostree.applyStaticDelta(f, o)), deploy: (c, o) =>
      effect(async () => {
        if (options.deployFails) throw new OutpostError('OSTREE_FAILED', 'deploying failed: No space left on device', { transient: options.deployFails === 'transient' });
        const deployed = await ostree.deploy(c, o);
        // ostree 2022.7 can fail after the swap: prune EPERM, the /boot flush, its default check.
        if (options.deployFailsAfterSwap) throw new OutpostError('OSTREE_FAILED', 'deploying failed: pruning: Operation not permitted');
        return deployed;
      }), undeploy: async (i) => (await noteArmedSwap(`undeploy ${i}`), effect(() => ostree.undeploy(i))), rollback: async () => (await noteArmedSwap('rollback'), effect(() => ostree.rollback())) };
  const downloads: string[] = [];
  const open = async () => {
    const store = await Store.open({ location: join(dir, 'store'), version: 1 });
    // CLOCK_MONOTONIC held at one minute after boot: deferral backoffs stay deterministic.
    const updates = new UpdateStore(store, defaultRetryPolicy, () => 60_000);
    const machine = new UpdateMachine({
      store: updates,
      log: silentLogger,
      steps: createSteps({
        ostree: wrapped,
        boot: { ...boot, markTrial: (target) => effect(() => boot.markTrial(target)), markGood: () => effect(() => boot.markGood()), reboot: (r) => effect(() => boot.reboot(r)) },
        downloader: { download: async (r) => (downloads.push(r.name), effect(async () => ({ path: join(r.dir, r.name), bytes: r.expectedLength, resumedFrom: 0, transferred: r.expectedLength, requests: 1, cached: false }))) },
        sources: { targetUrl: (name) => `http://updates.invalid/targets/${name}` },
        probation: async () => ((options.healthy ?? (() => true))() ? { ok: true } : { ok: false, reason: 'health checks failed during probation: app (exit 1)' }),
        probationStartMs: async () => 0,
        probationWindowMs: 1000,
        downloadDir: join(dir, 'downloads'),
        applyHeadroomBytes: 0,
        freeBytes: async () => Number.MAX_SAFE_INTEGER,
        bandwidthCapped: false,
        fsckBeforeDeploy: false,
        trialGuardMarker: join(dir, 'trial-guard.fired'),
        log: silentLogger,
        now: () => new Date(),
        onProgress: () => undefined,
        cancelSignal: () => options.cancelSignal ?? new AbortController().signal,
      }),
    });
    return { store, updates, machine };
  };
  return { dir, stateFile, boot, ostree, open, downloads, armedSwaps, reboots: () => reboots };
}

/** Runs the machine; after each pause (reboot) plays the bootloader and runs again, up to `boots` times. */
async function drive(d: Awaited<ReturnType<typeof device>>, boots = 4): Promise<string[]> {
  const states: string[] = [];
  for (let i = 0; i <= boots; i++) {
    const { store, machine } = await d.open();
    try {
      const record = await machine.run().catch((err: unknown) => {
        if (err instanceof OutpostError && err.message === 'simulated kill -9') return undefined;
        throw err;
      });
      if (record) states.push(record.state);
      if (record?.state === 'idle') return states;
    } finally {
      await store.close();
    }
    await d.boot.boot();
  }
  return states;
}

t.test('v1 → v2: download, apply, deploy, trial reboot, probation passes, commit', async (t) => {
  const d = await device(t);
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  t.equal((await machine.record()).state, 'downloading', 'persisted before any work');
  await store.close();
  t.same(await drive(d), ['rebooting', 'idle']);
  const { store: s2, machine: m2, updates } = await d.open();
  const record = await m2.record();
  t.match(record.last, { result: 'committed', version: 2, commit: v2 });
  t.equal(await updates.installedVersion(), 2, 'anti-rollback floor raised');
  t.equal(await updates.installedCommit(), v2, 'with the commit, to tell whether it is what runs');
  await s2.close();
  t.equal(await d.boot.bootedCommit(), v2);
  t.same(await d.boot.trialState(), { armed: false, remaining: null, bootsUsed: null }, 'blessed: no fallback armed');
  t.same(d.ostree.state.deployed, [v2, v1], 'v1 kept as the rollback deployment');
  t.equal(d.reboots(), 1);
});

t.test('a cancel that comes while the commit is being staged holds the update before its deploy', async (t) => {
  const cancel = new AbortController();
  const d = await device(t, { cancelSignal: cancel.signal });
  const { store, machine } = await d.open();
  t.teardown(() => store.close());
  await machine.begin(release, v1);
  // Asked for as the download ended: the apply step (which nothing stops midway) runs to its end.
  cancel.abort(new OutpostError('UPDATE_CANCELLED', 'cancelled'));
  await t.rejects(machine.run(), { code: 'UPDATE_CANCELLED' });
  t.equal((await machine.record()).state, 'downloaded', 'held before the deploy');
  t.same(d.ostree.state.deployed, [v1], 'nothing deployed');
  t.equal(d.reboots(), 0);
  t.match(await machine.cancel('by hand'), { state: 'idle', last: { code: 'UPDATE_CANCELLED' } });
});

t.test('an operator\'s rollback from idle: back to the kept deployment through the rollback states; the release left is not offered again', async (t) => {
  const d = await device(t);
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  await store.close();
  t.same(await drive(d), ['rebooting', 'idle'], 'v2 committed first');
  const { store: s2, machine: m2 } = await d.open();
  await m2.rollBack(release, 'by hand');
  t.equal((await m2.record()).state, 'rollingBack', 'persisted before any work');
  await s2.close();
  t.same(await drive(d), ['rollingBack', 'idle']);
  const { store: s3, machine: m3, updates } = await d.open();
  t.match((await m3.record()).last, { result: 'rolledBack', version: 2, reason: 'by hand' });
  t.ok(await updates.hasFailed(v2), 'v2 is not offered again');
  await s3.close();
  t.equal(await d.boot.bootedCommit(), v1, 'v1 booted');
  t.same(await d.boot.trialState(), { armed: false, remaining: null, bootsUsed: null }, 'untrialled: v1 is known good');
  t.same(d.ostree.state.deployed, [v1], 'v2 undeployed');
});

t.test('probation fails: automatic rollback to v1 with the reason, and v2 is never offered again', async (t) => {
  const d = await device(t, { healthy: () => false });
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  await store.close();
  t.same(await drive(d), ['rebooting', 'rollingBack', 'idle']);
  const { store: s2, machine: m2, updates } = await d.open();
  t.match((await m2.record()).last, { result: 'rolledBack', version: 2, reason: /health checks failed during probation: app/ });
  t.ok(await updates.hasFailed(v2), 'v2 recorded as failed');
  t.equal(await updates.installedVersion(), 0);
  await s2.close();
  t.equal(await d.boot.bootedCommit(), v1);
  t.same(d.ostree.state.deployed, [v1], 'the failed deployment is removed');
});

t.test('a release that never boots, with no hang seen: deferred and offered again, failed after its third trial', async (t) => {
  const d = await device(t);
  await simulateNeverBoots(d.stateFile, v2);
  for (let attempt = 1; attempt <= 3; attempt++) {
    const { store, machine } = await d.open();
    await machine.begin(release, v1);
    await store.close();
    t.same(await drive(d), ['rebooting', 'idle'], `attempt ${attempt}`);
    const { store: s2, machine: m2, updates } = await d.open();
    const last = (await m2.record()).last;
    const bootId = await d.boot.bootId();
    if (attempt < 3) {
      t.match(last, { result: 'rolledBack', reason: new RegExp(`never came up: the bootloader fell back.*offered again in \\d+ min \\(trial ${attempt} of 3\\)`) });
      t.notOk(await updates.hasFailed(v2), `attempt ${attempt}: not failed`);
      t.match(await updates.deferredWait(v2, bootId), { reason: /offered again in/ }, 'waits out its backoff in this boot');
      t.match(await updates.deferredWait(v2, 'another-boot'), { reason: /offered again in/ }, 'and in a later boot, counted from that boot\'s start');
    } else {
      t.match(last, { result: 'rolledBack', reason: /3 of 3 trials ended so: not offered again/ });
      t.ok(await updates.hasFailed(v2), 'failed for good');
    }
    await s2.close();
    t.equal(await d.boot.bootedCommit(), v1);
  }
});

t.test('the trial guard rebooted the unblessed trial: the fallback fails the release at once', async (t) => {
  const d = await device(t);
  await simulateNeverBoots(d.stateFile, v2);
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  await store.close();
  t.same(await drive(d, 0), ['rebooting'], 'deployed, rebooted: the trial boots ran out');
  // What systemd/outpost-trial-guard leaves behind before it reboots an unblessed trial.
  writeFileSync(join(d.dir, 'trial-guard.fired'), 'boot 1234: trial not blessed 600 s after boot\n');
  t.same(await drive(d), ['idle']);
  const { store: s2, machine: m2, updates } = await d.open();
  t.match((await m2.record()).last, { result: 'rolledBack', reason: /trial guard rebooted/ });
  t.ok(await updates.hasFailed(v2));
  await s2.close();
});

t.test('a deploy that fails after the swap keeps the trial armed and carries on', async (t) => {
  const d = await device(t, { deployFailsAfterSwap: true, healthy: () => false });
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  await store.close();
  t.same(await drive(d), ['rebooting', 'rollingBack', 'idle'], 'trial reboot, probation, rollback: never an untrialled default');
  const { store: s2, machine: m2 } = await d.open();
  t.match((await m2.record()).last, { result: 'rolledBack', version: 2, reason: /health checks failed/ });
  await s2.close();
  t.equal(await d.boot.bootedCommit(), v1);
  t.same(d.ostree.state.deployed, [v1]);
});

t.test('a deploy that fails for good (/boot full): disarmed, and what the attempt staged goes (the pin, then ostree\'s cleanup)', async (t) => {
  const d = await device(t, { deployFails: 'permanent' });
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  await store.close();
  t.same(await drive(d), ['idle']);
  const { store: s2, machine: m2 } = await d.open();
  t.match((await m2.record()).last, { result: 'failed', version: 2, code: 'OSTREE_FAILED', reason: /No space left/ });
  await s2.close();
  t.same(await d.boot.trialState(), { armed: false, remaining: null, bootsUsed: null }, 'no trial left armed');
  t.notOk(d.ostree.state.refs.has('outpost/staged'), 'the staged pin is dropped');
  t.ok(d.ostree.state.calls.indexOf('cleanup') > d.ostree.state.calls.findIndex((c) => c.startsWith('deploy')), 'ostree admin cleanup ran after the failed deploy');
  t.same(d.ostree.state.deployed, [v1]);
});

t.test('a deploy that fails transiently keeps what it staged for the retry', async (t) => {
  const d = await device(t, { deployFails: 'transient' });
  const { store, machine } = await d.open();
  await machine.begin(release, v1);
  await t.rejects(machine.run(), { code: 'OSTREE_FAILED', transient: true });
  t.equal((await machine.record()).state, 'applying', 'the state stays for the retry');
  await store.close();
  t.equal(d.ostree.state.refs.get('outpost/staged'), v2, 'the staged commit stays pinned');
  t.notOk(d.ostree.state.calls.includes('cleanup'));
});

t.test('power cut inside the deploy, before the swap, then two more early: the counter spends nothing and the release still commits', async (t) => {
  const d = await device(t);
  const { store, machine, updates } = await d.open();
  await machine.begin(release, v1);
  await updates.save({ ...(await machine.record()), state: 'applying' });
  await d.boot.markTrial(trialOfV2);
  await store.close();
  for (let cut = 0; cut < 3; cut++) {
    await simulateReset(d.stateFile, 'unknown');
    await d.boot.boot();
  }
  t.equal(await d.boot.bootedCommit(), v1, 'the installed release still boots, never the one below it');
  t.same(await d.boot.trialState(), { armed: true, remaining: 2, bootsUsed: 0 });
  t.same(await drive(d), ['rebooting', 'idle']);
  const { store: s2, machine: m2 } = await d.open();
  t.match((await m2.record()).last, { result: 'committed', version: 2 });
  await s2.close();
});

/** Puts `d` on the trial of v2 with probation begun, then resets it `resets` times for `cause`. */
async function resetDuringTrial(d: Awaited<ReturnType<typeof device>>, cause: 'watchdog' | 'unknown', resets = 1): Promise<void> {
  const { store, machine, updates } = await d.open();
  await machine.begin(release, v1);
  await d.boot.markTrial(trialOfV2);
  await d.ostree.deploy(v2);
  await d.boot.reboot('trial');
  await d.boot.boot();
  const record = await machine.record();
  await updates.save({ ...record, state: 'probation', probationBootId: await d.boot.bootId(), probationStartedAt: new Date().toISOString() });
  await store.close();
  for (let i = 0; i < resets; i++) {
    await simulateReset(d.stateFile, cause);
    await d.boot.boot();
  }
}

t.test('power lost between the deploy and the reboot: the boot that follows is the trial, no second reboot', async (t) => {
  const d = await device(t);
  const { store, machine, updates } = await d.open();
  await machine.begin(release, v1);
  await d.boot.markTrial(trialOfV2);
  await d.ostree.deploy(v2);
  await updates.save({ ...(await machine.record()), state: 'deployed' });
  await store.close();
  await simulateReset(d.stateFile, 'unknown');
  await d.boot.boot();
  t.same(await d.boot.trialState(), { armed: true, remaining: 1, bootsUsed: 1 }, 'the bootloader started the trial');
  t.same(await drive(d), ['idle']);
  const { store: s2, machine: m2 } = await d.open();
  t.match((await m2.record()).last, { result: 'committed', version: 2 });
  await s2.close();
  t.equal(d.reboots(), 0, 'outpost did not reboot into the trial it was already in');
});

t.test('a watchdog reset during the trial boot counts as a failed trial', async (t) => {
  let checks = 0;
  const d = await device(t, { healthy: () => ((checks += 1), true) });
  await resetDuringTrial(d, 'watchdog');
  t.equal(await d.boot.bootedCommit(), v2, 'the bootloader still boots the trial');
  t.same(await drive(d), ['rollingBack', 'idle']);
  const { store, machine, updates } = await d.open();
  t.match((await machine.record()).last, { result: 'rolledBack', reason: /hardware watchdog reset the system during the trial of release 2/ });
  t.ok(await updates.hasFailed(v2), 'never offered again');
  await store.close();
  t.equal(checks, 0, 'no health verdict is taken from a reset trial');
  t.equal(await d.boot.bootedCommit(), v1);
});

/** Puts `d` in `rebooting` towards v2 (trial armed, deployed), then boots it through `resets` for each boot. */
async function rebootIntoTrial(d: Awaited<ReturnType<typeof device>>, resets: ('watchdog' | 'unknown' | 'reboot')[]): Promise<void> {
  const { store, machine, updates } = await d.open();
  await machine.begin(release, v1);
  await d.boot.markTrial(trialOfV2);
  await d.ostree.deploy(v2);
  await updates.save({ ...(await machine.record()), state: 'rebooting', rebootFromBootId: await d.boot.bootId() });
  await store.close();
  for (const how of resets) {
    if (how === 'reboot') await d.boot.reboot('update');
    else await simulateReset(d.stateFile, how);
    await d.boot.boot();
  }
}

t.test('a watchdog reset in the first trial boot, before probation began, still fails the trial', async (t) => {
  const d = await device(t);
  await rebootIntoTrial(d, ['reboot', 'watchdog']);
  t.equal(await d.boot.bootedCommit(), v2, 'second trial boot');
  t.same(await drive(d), ['rollingBack', 'idle']);
  const { store, machine, updates } = await d.open();
  t.match((await machine.record()).last, { result: 'rolledBack', reason: /hardware watchdog reset the system during an earlier trial boot of release 2/ });
  t.ok(await updates.hasFailed(v2));
  await store.close();
  t.equal(await d.boot.bootedCommit(), v1);
});

t.test('a watchdog reset of the old system on its way down is not held against the release', async (t) => {
  const d = await device(t);
  await rebootIntoTrial(d, ['watchdog']);
  t.same(await d.boot.trialState(), { armed: true, remaining: 1, bootsUsed: 1 }, 'first trial boot');
  t.same(await drive(d), ['idle']);
  const { store, machine } = await d.open();
  t.match((await machine.record()).last, { result: 'committed', version: 2 });
  await store.close();
});

t.test('power lost during the trial boot: probation starts again and the release commits', async (t) => {
  let checks = 0;
  const d = await device(t, { healthy: () => ((checks += 1), true) });
  await resetDuringTrial(d, 'unknown');
  t.same(await drive(d), ['idle']);
  const { store, machine, updates } = await d.open();
  t.match((await machine.record()).last, { result: 'committed', version: 2 });
  t.notOk(await updates.hasFailed(v2));
  await store.close();
  t.ok(checks > 0, 'the health checks judged the new trial boot');
  t.equal(await d.boot.bootedCommit(), v2);
  t.same(await d.boot.trialState(), { armed: false, remaining: null, bootsUsed: null }, 'blessed');
});

t.test('power lost on every trial boot: the counter runs out and the bootloader falls back; the release is offered again later', async (t) => {
  const d = await device(t);
  await resetDuringTrial(d, 'unknown', 2);
  t.equal(await d.boot.bootedCommit(), v1, 'trialBoots (2) spent: fallback entry');
  t.same(await drive(d), ['rollingBack', 'idle'], 'the dead default deployment is removed first');
  const { store, machine, updates } = await d.open();
  t.match((await machine.record()).last, { result: 'rolledBack', reason: /restarted during the trial of release 2 and the bootloader fell back.*power loss\?\): offered again/ });
  t.notOk(await updates.hasFailed(v2), 'power loss is not held against the release');
  t.match(await updates.deferredWait(v2, await d.boot.bootId()), { reason: /trial 1 of 3/ });
  await store.close();
});

t.test('power lost on every trial boot, the last one reset by the watchdog: the release is failed', async (t) => {
  const d = await device(t);
  await resetDuringTrial(d, 'unknown', 1);
  await simulateReset(d.stateFile, 'watchdog');
  await d.boot.boot();
  t.equal(await d.boot.bootedCommit(), v1);
  t.same(await drive(d), ['rollingBack', 'idle']);
  const { store, machine, updates } = await d.open();
  t.ok(await updates.hasFailed(v2));
  t.match((await machine.record()).last, { reason: /hardware watchdog reset the last trial boot/ });
  await store.close();
});

t.test('kill -9 after any side effect resumes to the same committed end state', async (t) => {
  for (let crashAt = 1; crashAt <= 6; crashAt++) {
    const d = await device(t, { crashAt });
    const { store, machine } = await d.open();
    await machine.begin(release, v1);
    await store.close();
    await drive(d, 6);
    const { store: s2, machine: m2 } = await d.open();
    const record = await m2.record();
    await s2.close();
    t.equal(record.state, 'idle', `crash after effect ${crashAt}: back to idle`);
    t.match(record.last, { result: 'committed', version: 2 }, `crash after effect ${crashAt}: committed`);
    t.equal(await d.boot.bootedCommit(), v2, `crash after effect ${crashAt}: v2 booted`);
    t.same(d.ostree.state.deployed, [v2, v1], `crash after effect ${crashAt}: one deployment each`);
  }
});

t.test('a corrupt delta with no pull fallback fails the attempt and leaves the system untouched', async (t) => {
  const d = await device(t);
  const { store, machine } = await d.open();
  await machine.begin({ ...release, delta: { ...release.delta!, target: 'deltas/corrupt' } }, v1);
  await store.close();
  t.same(await drive(d, 0), ['idle']);
  const { store: s2, machine: m2 } = await d.open();
  t.match((await m2.record()).last, { result: 'failed', version: 2, reason: /corrupt/ });
  await s2.close();
  t.same(d.ostree.state.deployed, [v1]);
  t.same(await d.boot.trialState(), { armed: false, remaining: null, bootsUsed: null });
});

/** What the rollingBack step does on its nth run: die with the process, fail transiently, or finish. */
type StepPlan = (run: number) => 'crash' | 'transient' | 'restored';

/**
 * A device stuck in rollingBack whose step follows `plan`. A crash is kill -9 or the OOM killer:
 * the step never returns. Every `open()` is a daemon start: the same store, a fresh machine.
 */
async function crashingDevice(t: Test, plan: StepPlan) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-machine-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const seen = { runs: 0, saves: [] as number[], finishedWith: null as UpdateRecord | null };
  const open = async () => {
    const store = await Store.open({ location: join(dir, 'store'), version: 1 });
    let died = (): void => undefined;
    const crashed = new Promise<'crashed'>((resolve) => (died = () => resolve('crashed')));
    const unused = async (): Promise<StepResult> => {
      throw new Error('not reached');
    };
    const machine = new UpdateMachine({
      store: new UpdateStore(store),
      log: silentLogger,
      steps: {
        downloading: unused, downloaded: unused, applying: unused, deployed: unused, rebooting: unused, probation: unused, committed: unused,
        rollingBack: async (record) => {
          seen.saves.push(record.saves);
          const action = plan(++seen.runs);
          if (action === 'transient') throw new OutpostError('UPDATE_UNAVAILABLE', 'network down', { transient: true });
          if (action === 'restored') return { event: 'restored' };
          died();
          return new Promise<never>(() => undefined);
        },
        rolledBack: async (record) => {
          seen.finishedWith = record;
          return { event: 'done', patch: { release: null } };
        },
      },
    });
    const run = (): Promise<'crashed' | 'returned' | 'transient'> =>
      Promise.race([crashed, machine.run().then(() => 'returned' as const, () => 'transient' as const)]);
    return { run, close: () => store.close() };
  };
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  await new UpdateStore(store).save({ ...initialRecord(new Date()), state: 'rollingBack', release, previousCommit: v1 });
  await store.close();
  return { seen, open, dir };
}

t.test('a step that kills the daemon every time it runs: resumes are counted, and the loop event ends it', async (t) => {
  const d = await crashingDevice(t, () => 'crash');
  for (let boot = 0; boot < 50; boot++) {
    const daemon = await d.open();
    const outcome = await daemon.run();
    await daemon.close();
    if (outcome !== 'crashed') break;
  }
  t.equal(d.seen.runs, 20, 'the step ran maxSaves (20) times, then no more');
  t.match(d.seen.finishedWith, { state: 'rolledBack', reason: /stuck in rollingBack after 21 attempts/ }, 'the loop event: rollingBack → rolledBack');
  const store = await Store.open({ location: join(d.dir, 'store'), version: 1 });
  t.match(await new UpdateStore(store).failed.get(v2), { reason: /stuck in rollingBack/ }, 'a release that looped is not offered again');
  await store.close();
});

t.test('a crash counts once per restart, and each retry after a failed step once', async (t) => {
  const d = await crashingDevice(t, (run) => (run === 1 ? 'crash' : run < 4 ? 'transient' : 'restored'));
  const first = await d.open();
  t.equal(await first.run(), 'crashed');
  await first.close();
  const second = await d.open();
  t.equal(await second.run(), 'transient');
  t.equal(await second.run(), 'transient');
  t.equal(await second.run(), 'returned');
  await second.close();
  t.same(d.seen.saves, [1, 2, 3, 4], 'each start and each retry counted before its step ran, once');
  t.match(d.seen.finishedWith, { state: 'rolledBack', reason: null }, 'restored, not a loop');
});

t.test('an error that never clears, retried in one process: each retry counts, and the loop event ends it', async (t) => {
  const d = await crashingDevice(t, () => 'transient');
  const daemon = await d.open();
  let outcome: string = 'transient';
  for (let retry = 0; retry < 50 && outcome === 'transient'; retry++) outcome = await daemon.run();
  await daemon.close();
  t.equal(outcome, 'returned');
  t.equal(d.seen.runs, 20, 'the step ran maxSaves (20) times, then no more');
  t.match(d.seen.finishedWith, { state: 'rolledBack', reason: /stuck in rollingBack after 21 attempts/ }, 'the loop event: rollingBack → rolledBack');
});

t.test('a record a newer outpost wrote (fields this release does not know) is read, resumed and written back with them', async (t) => {
  const d = await device(t);
  const { store, machine, updates } = await d.open();
  await machine.begin(release, v1);
  const record = await machine.record();
  // What a newer release might add while it is on trial, before a rollback hands /var back.
  const newer = { ...record, trialClock: { bootId: 'b', startedMs: 1 }, release: { ...release, channel: 'beta' } };
  await store.batch().put(store.collection('update', z.unknown()), 'record', newer).commit();
  t.match(await updates.record(new Date()), { state: 'downloading', trialClock: { bootId: 'b' } }, 'not refused as corrupt');
  await store.close();
  t.same(await drive(d), ['rebooting', 'idle']);
  const { store: s2, machine: m2 } = await d.open();
  t.match(await m2.record(), { state: 'idle', last: { result: 'committed', version: 2 }, trialClock: { bootId: 'b' } }, 'committed; the unknown field kept');
  await s2.close();
});

t.test('rollback and fallback clean-up disarm the counter before they swap the boot config', async (t) => {
  // ostree alternates loader.0/loader.1: two swaps after the trial's deploy, its number is in use
  // again, and GRUB would count (and fall back from) the restored release after a power cut.
  const failing = await device(t, { healthy: () => false });
  const { store, machine } = await failing.open();
  await machine.begin(release, v1);
  await store.close();
  t.same(await drive(failing), ['rebooting', 'rollingBack', 'idle']);
  t.same(failing.armedSwaps, [], 'probation failed: no swap while armed');
  const never = await device(t);
  await simulateNeverBoots(never.stateFile, v2);
  const { store: s2, machine: m2 } = await never.open();
  await m2.begin(release, v1);
  await s2.close();
  t.same(await drive(never), ['rebooting', 'idle']);
  t.same(never.armedSwaps, [], 'fallback clean-up: no swap while armed');
});

t.test('a booted commit that cannot be read is no fallback: the trial is judged once it can be', async (t) => {
  const d = await device(t);
  await rebootIntoTrial(d, ['reboot']);
  const bootedCommit = d.boot.bootedCommit;
  d.boot.bootedCommit = async () => null;
  const { store, machine, updates } = await d.open();
  await t.rejects(machine.run(), { code: 'UPDATE_BOOTED_UNKNOWN', transient: true });
  t.equal((await machine.record()).state, 'rebooting', 'still waiting for a verdict');
  t.notOk(await updates.hasFailed(v2), 'not failed');
  t.equal(await updates.deferred.get(v2), undefined, 'not deferred either');
  await store.close();
  d.boot.bootedCommit = bootedCommit;
  t.same(await drive(d), ['idle']);
  const { store: s2, machine: m2 } = await d.open();
  t.match((await m2.record()).last, { result: 'committed', version: 2 });
  await s2.close();
});

t.test('updateUnderWay (the store holds breaking steps on it): no record or idle is not, any other state or an unreadable record is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-under-way-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open({ location: join(dir, 'db'), version: 1 });
  t.teardown(() => store.close());
  t.equal(await updateUnderWay(store), false, 'no record');
  const raw = store.collection('update', z.unknown());
  const record = initialRecord(new Date());
  await store.batch().put(raw, 'record', record).commit();
  t.equal(await updateUnderWay(store), false, 'idle');
  await store.batch().put(raw, 'record', { ...record, state: 'probation' }).commit();
  t.equal(await updateUnderWay(store), true, 'probation');
  await store.batch().put(raw, 'record', { schema: 'garbage' }).commit();
  t.equal(await updateUnderWay(store), true, 'unreadable');
});

t.test('cancel ends an update before its deploy, and is refused from the deploy on, changing nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-machine-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  t.teardown(() => store.close());
  const updates = new UpdateStore(store);
  const never = async (): Promise<StepResult> => {
    throw new Error('no step runs in this test');
  };
  const machine = new UpdateMachine({ store: updates, log: silentLogger, steps: { downloading: never, downloaded: never, applying: never, deployed: never, rebooting: never, probation: never, committed: never, rollingBack: never, rolledBack: never } });
  t.equal(await machine.cancel('by hand'), null, 'nothing under way: nothing to cancel, nothing written');
  await machine.begin(release, v1);
  const ended = await machine.cancel('by hand');
  t.match(ended, { state: 'idle', release: null, last: { result: 'failed', code: 'UPDATE_CANCELLED', version: 2, reason: 'by hand' } });
  t.ok(await updates.wasCancelled(v2), 'remembered for the automatic checks');
  t.notOk(await updates.hasFailed(v2), 'not held against the release as a failure');
  await machine.begin(release, v1);
  const applying = { ...(await machine.record()), state: 'applying' as const, counter: 99 };
  await updates.save(applying);
  await t.rejects(machine.cancel('by hand'), { code: 'UPDATE_TOO_LATE', message: /release 2 is past its download \(applying\)/ });
  t.same(await machine.record(), applying, 'the record is untouched');
});
