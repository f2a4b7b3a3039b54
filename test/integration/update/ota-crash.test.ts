import t, { type Test } from 'tap';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { simulateNeverBoots, simulateReset } from '../../../runtime/update/boot/index.js';
import { otaDevice, type OtaDevice } from '../../../scripts/world/ota-device.js';

async function world(t: Test): Promise<OtaWorld> {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  return ota;
}

/** Order of deployments in `ostree admin status` (default first). */
async function deployedOrder(ota: OtaWorld, d: OtaDevice): Promise<number[]> {
  const byCommit = new Map([...ota.ostree.commits].map(([v, c]) => [c, v]));
  return [...(await d.adminStatus()).matchAll(/([0-9a-f]{64})\.\d+/g)].map((m) => byCommit.get(m[1] ?? '') ?? -1);
}

t.test('kill -9 in every state of an update: the device resumes and converges with no help', async (t) => {
  const ota = await world(t);
  const d = otaDevice(ota);
  t.teardown(d.cleanup);
  const states = ['downloading', 'downloaded', 'applying', 'deployed', 'rebooting', 'probation', 'committed'];
  for (const [i, state] of states.entries()) {
    const version = i + 2;
    await ota.release(version, { deltaFrom: [version - 1] });
    // Boot with the fault armed (reboots included) until it fires: later states live in later boots.
    let killed = false;
    for (let boot = 0; boot < 3 && !killed; boot++) {
      const { daemon } = await d.boot({ OUTPOST_FAULT_KILL_AT_STATE: state });
      if (boot === 0) await d.cli(['update', 'apply']);
      killed = (await daemon).signal === 'SIGKILL';
    }
    t.ok(killed, `killed in ${state}`);
    const status = await d.converge();
    t.match(status.last, { result: 'committed', version }, `after a kill in ${state}: release ${version} committed`);
    t.equal(status.bootedCommit, ota.ostree.commit(version));
    const order = await deployedOrder(ota, d);
    t.equal(order[0], version, `after a kill in ${state}: release ${version} is the default deployment`);
    t.ok(order.includes(version - 1), `after a kill in ${state}: release ${version - 1} kept for rollback`);
  }
});

t.test('kill -9 while rolling back a release that fails probation: the device resumes, ends on the previous release and never retries it', async (t) => {
  const ota = await world(t);
  const failingCheck = { 'usr/libexec/outpost/health-check': '#!/bin/sh\necho "app did not start" >&2\nexit 1\n' };
  const d = otaDevice(ota, { probation: { windowSec: 2, intervalSec: 1, checks: [{ name: 'app', command: ['/bin/sh', '-c', 'exec "$OUTPOST_DEPLOYMENT_ROOT/usr/libexec/outpost/health-check"'] }] } });
  t.teardown(d.cleanup);
  const failed: number[] = [];
  for (const [i, state] of ['rollingBack', 'rolledBack'].entries()) {
    const version = i + 2;
    // From release 1, which stays booted: every release here fails its trial.
    await ota.release(version, { deltaFrom: [1], extra: failingCheck });
    // rolledBack is only reached in the third boot: apply, trial, back on release 1.
    let killed = false;
    for (let boot = 0; boot < 4 && !killed; boot++) {
      const { daemon } = await d.boot({ OUTPOST_FAULT_KILL_AT_STATE: state });
      if (boot === 0) await d.cli(['update', 'apply']);
      killed = (await daemon).signal === 'SIGKILL';
    }
    t.ok(killed, `killed in ${state}`);
    const status = await d.converge();
    failed.unshift(version);
    t.match(status.last, { result: 'rolledBack', version, commit: ota.ostree.commit(version), reason: /health checks failed during probation: app/ }, `after a kill in ${state}: release ${version} rolled back`);
    t.equal(status.bootedCommit, ota.ostree.commit(1), `after a kill in ${state}: release 1 booted`);
    t.same(await deployedOrder(ota, d), [1], `after a kill in ${state}: release 1 is the default and release ${version} is no longer deployed`);
    const { daemon: again } = await d.boot();
    const check = await d.cli(['update', 'check']);
    t.match(check.stdout, `release ${failed.join(', ')} failed its trial on this device and is not retried`, `after a kill in ${state}: release ${version} is not offered again`);
    again.kill('SIGTERM');
    await again;
  }
});

t.test('a release that never reaches userspace: the bootloader falls back; with no hang seen, outpost defers it instead of retrying at once', async (t) => {
  const ota = await world(t);
  const d = otaDevice(ota);
  t.teardown(d.cleanup);
  await ota.release(2, { deltaFrom: [1] });
  mkdirSync(d.world.stateDir, { recursive: true });
  await simulateNeverBoots(join(d.world.stateDir, 'simulated-boot.json'), ota.ostree.commit(2));
  const { daemon } = await d.boot();
  await d.cli(['update', 'apply']);
  await daemon;
  const status = await d.converge();
  t.match(status.last, { result: 'rolledBack', version: 2, reason: /never came up: the bootloader fell back.*offered again in 10 min \(trial 1 of 3\)/ });
  t.equal(status.bootedCommit, ota.ostree.commit(1));
  const { daemon: again } = await d.boot();
  t.match((await d.cli(['update', 'check'])).stdout, /release 2 is offered again in \d+ min \(trial 1 of 3/);
  again.kill('SIGTERM');
  await again;
});

/** Boots into the trial of release 2 and resets the device in probation, for `cause`. */
async function resetDuringTrial(t: Test, cause: 'watchdog' | 'unknown'): Promise<{ ota: OtaWorld; d: OtaDevice }> {
  const ota = await world(t);
  const d = otaDevice(ota);
  t.teardown(d.cleanup);
  await ota.release(2, { deltaFrom: [1] });
  const { daemon } = await d.boot();
  await d.cli(['update', 'apply']);
  await daemon;
  const { daemon: trial } = await d.boot({ OUTPOST_FAULT_KILL_AT_STATE: 'probation' });
  await trial;
  await simulateReset(join(d.world.stateDir, 'simulated-boot.json'), cause);
  return { ota, d };
}

t.test('a watchdog reset during the trial boot counts as a failed trial and rolls back', async (t) => {
  const { ota, d } = await resetDuringTrial(t, 'watchdog');
  const status = await d.converge();
  t.match(status.last, { result: 'rolledBack', version: 2, reason: /hardware watchdog reset the system during the trial/ });
  t.equal(status.bootedCommit, ota.ostree.commit(1));
  t.same(await deployedOrder(ota, d), [1], 'only v1 is left deployed');
});

t.test('power lost during the trial boot: probation starts again on the next trial boot and commits', async (t) => {
  const { ota, d } = await resetDuringTrial(t, 'unknown');
  const status = await d.converge();
  t.match(status.last, { result: 'committed', version: 2 });
  t.equal(status.bootedCommit, ota.ostree.commit(2));
  t.same(await deployedOrder(ota, d), [2, 1], 'v2 is the default, v1 kept for rollback');
});
