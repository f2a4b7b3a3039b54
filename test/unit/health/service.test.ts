import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { configSchema } from '../../../runtime/config/index.js';
import { HealthService } from '../../../runtime/health/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { Store } from '../../../runtime/store/index.js';

const sec = 1000;
const broker = { url: 'mqtts://broker.example:8883', caFile: '/etc/outpost/ca.pem', certFile: '/etc/outpost/device.pem', keyFile: '/etc/outpost/device.key' };

t.test('restart-outpost attempts survive a provisional pass after the restart (no evidence of recovery); a real pass clears them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-health-service-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  t.teardown(() => store.close());
  const attempts = store.collection('health-restart-attempts', z.unknown());
  // The process before this one restarted outpost for the 4th time at 100 s: the 5th waits 240 s from then.
  await store.batch().put(attempts, 'mqtt', { attempts: 4, bootId: 'boot-a', monotonicMs: 100 * sec }).commit();

  const clock = { mono: 101 * sec, now: () => new Date('2026-03-01T10:00:00.000Z'), monotonicMs: () => clock.mono };
  let link: { connected: boolean; lastConnectedMs: number | undefined } = { connected: false, lastConnectedMs: 100 * sec };
  const restarts: string[] = [];
  const config = configSchema.parse({
    deviceId: 'gw-1',
    broker,
    health: { checks: [{ name: 'mqtt', kind: 'mqtt', severity: 'required', intervalSec: 3600, failAfter: 1, withinSec: 60, remediation: { action: 'restart-outpost' } }], greenboot: { dir: join(dir, 'greenboot') } },
  }).health;
  const service = new HealthService({
    config,
    store: () => store,
    clock,
    exec: { run: async () => ({ stdout: '', stderr: '' }) },
    log: silentLogger,
    bootId: async () => 'boot-a',
    link: () => link,
    ports: { restartUnit: async () => undefined, restartOutpost: (reason) => void restarts.push(reason), reboot: async () => undefined },
    rollback: () => undefined,
    emit: async () => undefined,
  });
  await service.start();
  t.teardown(() => service.stop());
  const [mqtt] = await service.requiredChecks();
  if (mqtt === undefined) throw new Error('no mqtt check');
  // Each run is a run of the schedule: its remediation is done when it resolves.
  const run = () => mqtt.run();

  clock.mono = 150 * sec;
  await run();
  t.match(service.report().checks, [{ name: 'mqtt', status: 'passing' }], 'passing on the link\'s grace');
  link = { connected: false, lastConnectedMs: undefined };
  await run();
  t.match(service.report().checks, [{ name: 'mqtt', status: 'failing' }]);
  t.same(restarts, [], 'no restart: still backing off from the 4th attempt');
  t.same(await attempts.get('mqtt'), { attempts: 4, bootId: 'boot-a', monotonicMs: 100 * sec }, 'the provisional pass left the attempts');

  link = { connected: true, lastConnectedMs: 150 * sec };
  await run();
  t.equal(await attempts.get('mqtt'), undefined, 'a pass with evidence clears them');
  link = { connected: false, lastConnectedMs: undefined };
  await run();
  t.match(restarts, [/never connected to the broker since outpost started\); remediation attempt 1$/], 'failing again after it: a restart right away, attempt 1');
});

t.test('a passing run that damping still counts as failing (recoverAfter > 1) is not remediated', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-health-service-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  t.teardown(() => store.close());
  const clock = { mono: 1000 * sec, now: () => new Date('2026-03-01T10:00:00.000Z'), monotonicMs: () => clock.mono };
  let link = { connected: false, lastConnectedMs: undefined as number | undefined };
  const remedies: string[][] = [];
  const config = configSchema.parse({
    deviceId: 'gw-1',
    broker,
    health: {
      backoffMinSec: 1,
      checks: [{ name: 'mqtt', kind: 'mqtt', severity: 'required', intervalSec: 3600, failAfter: 1, recoverAfter: 2, withinSec: 60, remediation: { action: 'exec', command: ['/usr/bin/systemctl', 'restart', 'modem'] } }],
      greenboot: { dir: join(dir, 'greenboot') },
    },
  }).health;
  const service = new HealthService({
    config,
    store: () => store,
    clock,
    exec: { run: async (cmd: string, args: readonly string[]) => (remedies.push([cmd, ...args]), { stdout: '', stderr: '' }) },
    log: silentLogger,
    bootId: async () => 'boot-a',
    link: () => link,
    ports: { restartUnit: async () => undefined, restartOutpost: () => undefined, reboot: async () => undefined },
    rollback: () => undefined,
    emit: async () => undefined,
  });
  await service.start();
  t.teardown(() => service.stop());
  const [mqtt] = await service.requiredChecks();
  if (mqtt === undefined) throw new Error('no mqtt check');
  await mqtt.run();
  t.match(service.report().checks, [{ name: 'mqtt', status: 'failing' }]);
  t.equal(remedies.length, 1, 'the failing run is remediated');
  // Connected again, well past the backoff: one pass of the two recoverAfter asks for.
  link = { connected: true, lastConnectedMs: 1000 * sec };
  clock.mono = 2000 * sec;
  await mqtt.run();
  t.match(service.report().checks, [{ name: 'mqtt', status: 'failing' }], 'still failing: damped until a second pass');
  t.equal(remedies.length, 1, 'no remediation on the run that passed');
});
