import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { OutpostError } from '../../../runtime/errors.js';
import type { Clock, ExecOptions } from '../../../runtime/platform/index.js';
import { Store } from '../../../runtime/store/index.js';
import { RebootBreaker } from '../../../runtime/health/breaker.js';
import { RestartAttempts } from '../../../runtime/health/restart-attempts.js';
import { Remediator, type RemediationPorts, type Remediation } from '../../../runtime/health/remediation.js';

const sec = 1000;

/** Both clocks; only the monotonic one matters to the remediator. */
function fakeClock() {
  const clock = { mono: 0, now: () => new Date('2026-03-01T10:00:00.000Z'), monotonicMs: () => clock.mono };
  return clock;
}

/** Ports that record each call and fail when told to. */
function recordingPorts(fail: { with?: Error } = {}) {
  const calls: (string | [string, string[], ExecOptions | undefined])[] = [];
  const ports: RemediationPorts = {
    restartUnit: async (unit) => {
      calls.push(`restart-unit ${unit}`);
      if (fail.with) throw fail.with;
    },
    exec: {
      run: async (cmd, args, opts) => {
        calls.push([cmd, args, opts]);
        if (fail.with) throw fail.with;
        return { stdout: '', stderr: '' };
      },
    },
    restartOutpost: (reason) => {
      calls.push(`restart-outpost: ${reason}`);
      if (fail.with) throw fail.with;
    },
    reboot: async (reason) => {
      calls.push(`reboot: ${reason}`);
      if (fail.with) throw fail.with;
    },
  };
  return { ports, calls };
}

/** A store in a temp dir, removed at the end of the test; each call opens it again (a restart). */
function storeDir(t: Test): () => Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-remediation-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return async () => {
    const store = await Store.open({ location: join(dir, 'store'), version: 1 });
    t.teardown(() => store.close());
    return store;
  };
}

/** What the remediator keeps in the store (the breaker, the restart attempts), as one process of boot `bootId` opens it. */
async function persisted(store: Store, clock: Clock, maxReboots = 3, bootId = 'boot-a'): Promise<{ breaker: RebootBreaker; restarts: RestartAttempts }> {
  return {
    breaker: await RebootBreaker.open(store, { maxReboots, windowSec: 86_400, bootId, clock }),
    restarts: await RestartAttempts.open(store, { bootId, clock }),
  };
}

/** The same on a fresh store. */
async function persistedFor(t: Test, maxReboots: number, clock: Clock): Promise<{ breaker: RebootBreaker; restarts: RestartAttempts }> {
  return persisted(await storeDir(t)(), clock, maxReboots);
}

const restartApp: Remediation = { action: 'restart-unit', unit: 'app.service' };
const reboot: Remediation = { action: 'reboot' };

t.test('backoff: first action now, then after the min, doubling, capped at the max; passing again starts over', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 200, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0 });
  const at = async (s: number) => {
    clock.mono = Math.round(s * sec);
    return remediator.failing('app', restartApp, 'connection refused');
  };
  t.same(await at(0), { check: 'app', action: 'restart-unit', outcome: 'done', attempt: 1, nextInMs: 30 * sec }, 'right away');
  t.same(await at(10), { check: 'app', action: 'restart-unit', outcome: 'backing-off', attempt: 2, nextInMs: 20 * sec });
  t.match(await at(30), { outcome: 'done', attempt: 2, nextInMs: 60 * sec }, 'after the min');
  t.match(await at(89.999), { outcome: 'backing-off', attempt: 3, nextInMs: 1 });
  t.match(await at(90), { outcome: 'done', attempt: 3, nextInMs: 120 * sec }, 'doubled');
  t.match(await at(210), { outcome: 'done', attempt: 4, nextInMs: 200 * sec }, 'capped');
  t.match(await at(410), { outcome: 'done', attempt: 5, nextInMs: 200 * sec }, 'stays at the cap');
  t.equal(calls.length, 5, 'acted only when the backoff allowed');

  await remediator.passed('app');
  t.match(await at(411), { outcome: 'done', attempt: 1, nextInMs: 30 * sec }, 'failing again after a pass: right away, from the min');
  t.match(await at(412), { outcome: 'backing-off', attempt: 2 });
  t.equal(calls.length, 6);
});

t.test('backoff is per check', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 200, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0 });
  t.match(await remediator.failing('app', restartApp), { outcome: 'done' });
  t.match(await remediator.failing('db', { action: 'restart-unit', unit: 'db.service' }), { outcome: 'done' }, 'another check is not held back by the first');
  t.match(await remediator.failing('app', restartApp), { outcome: 'backing-off' });
  await remediator.passed('db');
  t.match(await remediator.failing('app', restartApp), { outcome: 'backing-off' }, 'another check passing does not reset this one');
  t.same(calls, ['restart-unit app.service', 'restart-unit db.service']);
});

t.test('jitter: up to 10% more, never past the max', async (t) => {
  const clock = fakeClock();
  const { ports } = recordingPorts();
  const remediator = new Remediator({ backoffMinSec: 100, backoffMaxSec: 150, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0.5 });
  t.match(await remediator.failing('app', restartApp), { nextInMs: 105 * sec });
  clock.mono = 105 * sec;
  t.match(await remediator.failing('app', restartApp), { nextInMs: 150 * sec }, '200 s capped: jitter does not go past the max');
});

t.test('each action kind goes to its port', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0 });
  t.match(await remediator.failing('app', restartApp), { action: 'restart-unit', outcome: 'done' });
  t.match(await remediator.failing('spool', { action: 'exec', command: ['/usr/libexec/clean-spool', '--all'], timeoutSec: 20 }), { action: 'exec', outcome: 'done' });
  t.match(await remediator.failing('net', reboot, 'no route to the broker'), { action: 'reboot', outcome: 'done', attempt: 1 });
  t.same(calls, [
    'restart-unit app.service',
    ['/usr/libexec/clean-spool', ['--all'], { timeoutMs: 20_000, ownGroup: true, maxBufferBytes: 1024 * 1024 }],
    'reboot: health check net is failing (no route to the broker); remediation attempt 1',
  ]);
});

t.test('restart-outpost: not before the min has passed since the remediator started, so restarts cannot loop faster', async (t) => {
  const clock = fakeClock();
  clock.mono = 500 * sec;
  const { ports, calls } = recordingPorts();
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0 });
  const restartOutpost: Remediation = { action: 'restart-outpost' };
  clock.mono += 10 * sec;
  t.same(await remediator.failing('mqtt', restartOutpost), { check: 'mqtt', action: 'restart-outpost', outcome: 'backing-off', attempt: 1, nextInMs: 20 * sec });
  t.match(await remediator.failing('app', restartApp), { outcome: 'done' }, 'other actions are not held back');
  clock.mono += 20 * sec;
  t.match(await remediator.failing('mqtt', restartOutpost, 'link down'), { outcome: 'done', attempt: 1, nextInMs: 30 * sec });
  t.same(calls, ['restart-unit app.service', 'restart-outpost: health check mqtt is failing (link down); remediation attempt 1']);
});

const restartOutpost: Remediation = { action: 'restart-outpost' };

/**
 * Processes of outpost one after the other over one store (each restart-outpost ends one): each
 * opens the store again and builds its remediator from it, in boot `bootId`, at the clock's time.
 */
function processes(t: Test, clock: ReturnType<typeof fakeClock>) {
  const open = storeDir(t);
  return async (bootId = 'boot-a') => {
    const store = await open();
    const attempts = store.collection('health-restart-attempts', z.unknown());
    const { ports, calls } = recordingPorts();
    /** What was on disk for the check when each restart was asked for. */
    const onDiskAtRestart: Promise<unknown>[] = [];
    ports.restartOutpost = (reason) => {
      calls.push(`restart-outpost: ${reason}`);
      onDiskAtRestart.push(attempts.get('mqtt'));
    };
    const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 1000, ports, ...(await persisted(store, clock, 3, bootId)), safeMode: () => undefined, clock, random: () => 0 });
    return { store, remediator, calls, onDiskAtRestart, onDisk: () => attempts.get('mqtt') };
  };
}

t.test('restart-outpost across its restarts: each attempt is on disk before the restart, and the next process goes on with the backoff and the count', async (t) => {
  const clock = fakeClock();
  const start = processes(t, clock);

  let outpost = await start();
  clock.mono = 100 * sec;
  t.same(await outpost.remediator.failing('mqtt', restartOutpost, 'link down'), { check: 'mqtt', action: 'restart-outpost', outcome: 'done', attempt: 1, nextInMs: 30 * sec });
  t.same(await Promise.all(outpost.onDiskAtRestart), [{ attempts: 1, bootId: 'boot-a', monotonicMs: 100 * sec }], 'recorded before the restart was asked for');
  t.match(await outpost.remediator.failing('app', restartApp), { outcome: 'done', attempt: 1 });
  await outpost.store.close();

  // systemd starts outpost again in the same boot: the monotonic clock runs on.
  clock.mono = 101 * sec;
  outpost = await start();
  clock.mono = 131 * sec;
  t.same(await outpost.remediator.failing('mqtt', restartOutpost, 'link down'), { check: 'mqtt', action: 'restart-outpost', outcome: 'done', attempt: 2, nextInMs: 60 * sec }, 'the count goes on, and so does the doubling');
  t.same(outpost.calls, ['restart-outpost: health check mqtt is failing (link down); remediation attempt 2']);
  t.match(await outpost.remediator.failing('app', restartApp), { outcome: 'done', attempt: 1 }, 'in-process actions start over with the process');
  await outpost.store.close();

  clock.mono = 132 * sec;
  outpost = await start();
  clock.mono = 170 * sec;
  t.same(await outpost.remediator.failing('mqtt', restartOutpost), { check: 'mqtt', action: 'restart-outpost', outcome: 'backing-off', attempt: 3, nextInMs: 21 * sec }, 'waits the backoff of attempt 2 from when it was made, not from this start');
  clock.mono = 191 * sec;
  t.match(await outpost.remediator.failing('mqtt', restartOutpost), { outcome: 'done', attempt: 3, nextInMs: 120 * sec });
  t.same(await outpost.onDisk(), { attempts: 3, bootId: 'boot-a', monotonicMs: 191 * sec });
  await outpost.store.close();

  // A reboot: another boot id, the monotonic clock from zero again.
  clock.mono = 20 * sec;
  outpost = await start('boot-b');
  clock.mono = 50 * sec;
  t.match(await outpost.remediator.failing('mqtt', restartOutpost), { outcome: 'done', attempt: 1, nextInMs: 30 * sec }, 'another boot starts over');
  t.same(await outpost.onDisk(), { attempts: 1, bootId: 'boot-b', monotonicMs: 50 * sec });
  await outpost.store.close();

  // The same boot id after a reboot (it could not be read, both boots fell back to one value): the clock is behind the attempt.
  clock.mono = 10 * sec;
  outpost = await start('boot-b');
  clock.mono = 40 * sec;
  t.match(await outpost.remediator.failing('mqtt', restartOutpost), { outcome: 'done', attempt: 1 }, 'an attempt the monotonic clock has not reached is from another boot: starts over');
});

t.test('restart-outpost: a pass clears the attempts on disk; one that cannot be recorded restarts nothing', async (t) => {
  const clock = fakeClock();
  const start = processes(t, clock);
  let outpost = await start();
  clock.mono = 100 * sec;
  t.match(await outpost.remediator.failing('mqtt', restartOutpost), { outcome: 'done', attempt: 1 });
  t.match(await outpost.onDisk(), { attempts: 1 });
  await outpost.remediator.passed('mqtt');
  t.equal(await outpost.onDisk(), undefined, 'cleared');
  await outpost.store.close();

  clock.mono = 101 * sec;
  outpost = await start();
  clock.mono = 131 * sec;
  t.match(await outpost.remediator.failing('mqtt', restartOutpost), { outcome: 'done', attempt: 1 }, 'failing again after the pass: from the start');
  t.same(outpost.calls, ['restart-outpost: health check mqtt is failing; remediation attempt 1']);

  await outpost.store.close();
  clock.mono = 200 * sec;
  t.match(await outpost.remediator.failing('mqtt', restartOutpost), { outcome: 'failed', attempt: 2, detail: /^no restart: cannot record the attempt first: / }, 'no record, no restart');
  t.equal(outpost.calls.length, 1);
});

t.test('action failures are results, not throws, and still move the backoff on', async (t) => {
  const clock = fakeClock();
  const refused = new OutpostError('INSTALLER_REFUSED', 'app.service is not listed in the installer config');
  const { ports, calls } = recordingPorts({ with: refused });
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0 });
  t.same(await remediator.failing('app', restartApp), { check: 'app', action: 'restart-unit', outcome: 'failed', detail: 'app.service is not listed in the installer config', attempt: 1, nextInMs: 30 * sec });
  t.match(await remediator.failing('app', restartApp), { outcome: 'backing-off', attempt: 2 });
  t.match(await remediator.failing('spool', { action: 'exec', command: ['false'], timeoutSec: 5 }), { outcome: 'failed', detail: refused.message });
  t.match(await remediator.failing('empty', { action: 'exec', command: [], timeoutSec: 5 }), { outcome: 'failed', detail: 'empty command' });
  t.match(await remediator.failing('net', reboot), { outcome: 'failed', detail: refused.message });
  clock.mono = 30 * sec;
  t.match(await remediator.failing('mqtt', { action: 'restart-outpost' }), { outcome: 'failed', detail: refused.message }, 'a port throwing synchronously is caught too');
  t.equal(calls.length, 4, 'the empty command ran nothing');
});

t.test('breaker open: needs attention with its reason, and no reboot', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const { breaker, restarts } = await persistedFor(t, 1, clock);
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, breaker, restarts, safeMode: () => undefined, clock, random: () => 0 });
  t.match(await remediator.failing('net', reboot), { outcome: 'done', attempt: 1 });
  clock.mono = 30 * sec;
  t.match(await remediator.failing('net', reboot), { outcome: 'needs-attention', attempt: 2, nextInMs: 60 * sec, detail: /^1 remediation reboots within 86400 s \(at most 1\)/ });
  t.match(await remediator.failing('net', reboot), { outcome: 'backing-off' }, 'reported at the backoff\'s pace');
  t.equal(calls.filter((c) => typeof c === 'string' && c.startsWith('reboot')).length, 1, 'one reboot only');

  const never = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, ...(await persistedFor(t, 0, clock)), safeMode: () => undefined, clock, random: () => 0 });
  t.match(await never.failing('net', reboot), { outcome: 'needs-attention', detail: /maxReboots is 0/ });
  t.equal(calls.length, 1);
});

t.test('safe mode: no reboot, the breaker untouched; other actions still run', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const { breaker, restarts } = await persistedFor(t, 3, clock);
  let safeMode: string | undefined = 'rolled back from commit c2, and c1 fails its required checks';
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, breaker, restarts, safeMode: () => safeMode, clock, random: () => 0 });
  t.same(await remediator.failing('net', reboot), { check: 'net', action: 'reboot', outcome: 'safe-mode', detail: 'no reboot in safe mode: rolled back from commit c2, and c1 fails its required checks', attempt: 1, nextInMs: 30 * sec });
  t.match(await remediator.failing('app', restartApp), { outcome: 'done' });
  t.same(calls, ['restart-unit app.service']);
  t.equal(breaker.state().recent, 0, 'no reboot recorded');

  safeMode = undefined;
  clock.mono = 30 * sec;
  t.match(await remediator.failing('net', reboot), { outcome: 'done', attempt: 2 }, 'out of safe mode the reboot goes ahead');
  t.equal(breaker.state().recent, 1);
});

t.test('held while an update is under way: no reboot, the breaker untouched, until the update path is done', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const { breaker, restarts } = await persistedFor(t, 3, clock);
  let held: string | undefined = 'an update is under way (probation)';
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, breaker, restarts, safeMode: () => undefined, rebootHeld: () => held, clock, random: () => 0 });
  t.same(await remediator.failing('net', reboot), { check: 'net', action: 'reboot', outcome: 'held', detail: 'no reboot for health now: an update is under way (probation)', attempt: 1, nextInMs: 30 * sec });
  t.same(calls, []);
  t.equal(breaker.state().recent, 0, 'no reboot recorded');
  held = undefined;
  clock.mono = 30 * sec;
  t.match(await remediator.failing('net', reboot), { outcome: 'done', attempt: 2 });
  t.equal(breaker.state().recent, 1);
});

t.test('a second call while an action still runs backs off instead of acting twice', async (t) => {
  const clock = fakeClock();
  const { ports, calls } = recordingPorts();
  const remediator = new Remediator({ backoffMinSec: 30, backoffMaxSec: 60, ports, ...(await persistedFor(t, 3, clock)), safeMode: () => undefined, clock, random: () => 0 });
  const [first, second] = await Promise.all([remediator.failing('app', restartApp), remediator.failing('app', restartApp)]);
  t.match(first, { outcome: 'done' });
  t.match(second, { outcome: 'backing-off' });
  t.equal(calls.length, 1);
});
