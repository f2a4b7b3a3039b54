import t, { type Test } from 'tap';
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

type Link = { connected: boolean; lastConnectedMs: number | undefined };

/**
 * A HealthService on a real store in a temp dir with one required `mqtt` check (`check` adds to
 * it), started; resolves to the check's run (a run of the schedule: its remediation is done when it
 * resolves) and what its ports and exec saw.
 */
async function mqttCheckService(t: Test, options: { check: Record<string, unknown>; health?: Record<string, unknown>; clock: { now: () => Date; monotonicMs: () => number }; link: () => Link; prepare?: (store: Store) => Promise<void> }) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-health-service-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  t.teardown(() => store.close());
  await options.prepare?.(store);
  const seen = { restarts: [] as string[], commands: [] as string[][] };
  const config = configSchema.parse({
    deviceId: 'gw-1',
    broker,
    health: { ...options.health, checks: [{ name: 'mqtt', kind: 'mqtt', severity: 'required', intervalSec: 3600, failAfter: 1, withinSec: 60, ...options.check }], greenboot: { dir: join(dir, 'greenboot') } },
  }).health;
  const service = new HealthService({
    config,
    store: () => store,
    clock: options.clock,
    exec: { run: async (cmd: string, args: readonly string[]) => (seen.commands.push([cmd, ...args]), { stdout: '', stderr: '' }) },
    log: silentLogger,
    bootId: async () => 'boot-a',
    link: options.link,
    ports: { restartUnit: async () => undefined, restartOutpost: (reason) => void seen.restarts.push(reason), reboot: async () => undefined },
    rollback: () => undefined,
    emit: async () => undefined,
  });
  await service.start();
  t.teardown(() => service.stop());
  const [check] = await service.requiredChecks();
  if (check === undefined) throw new Error('no mqtt check');
  return { service, store, run: () => check.run(), ...seen };
}

t.test('restart-outpost attempts survive a provisional pass after the restart (no evidence of recovery); a real pass clears them', async (t) => {
  const clock = { mono: 101 * sec, now: () => new Date('2026-03-01T10:00:00.000Z'), monotonicMs: () => clock.mono };
  let link: Link = { connected: false, lastConnectedMs: 100 * sec };
  const { service, store, run, restarts } = await mqttCheckService(t, {
    check: { remediation: { action: 'restart-outpost' } },
    clock,
    link: () => link,
    // The process before this one restarted outpost for the 4th time at 100 s: the 5th waits 240 s from then.
    prepare: (store) => store.batch().put(store.collection('health-restart-attempts', z.unknown()), 'mqtt', { attempts: 4, bootId: 'boot-a', monotonicMs: 100 * sec }).commit(),
  });
  const attempts = store.collection('health-restart-attempts', z.unknown());

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
  const clock = { mono: 1000 * sec, now: () => new Date('2026-03-01T10:00:00.000Z'), monotonicMs: () => clock.mono };
  let link: Link = { connected: false, lastConnectedMs: undefined };
  const { service, run, commands } = await mqttCheckService(t, {
    check: { recoverAfter: 2, remediation: { action: 'exec', command: ['/usr/bin/systemctl', 'restart', 'modem'] } },
    health: { backoffMinSec: 1 },
    clock,
    link: () => link,
  });
  await run();
  t.match(service.report().checks, [{ name: 'mqtt', status: 'failing' }]);
  t.equal(commands.length, 1, 'the failing run is remediated');
  // Connected again, well past the backoff: one pass of the two recoverAfter asks for.
  link = { connected: true, lastConnectedMs: 1000 * sec };
  clock.mono = 2000 * sec;
  await run();
  t.match(service.report().checks, [{ name: 'mqtt', status: 'failing' }], 'still failing: damped until a second pass');
  t.equal(commands.length, 1, 'no remediation on the run that passed');
});
