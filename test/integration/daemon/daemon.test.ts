import t from 'tap';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { deviceWorld } from '../../../scripts/world/device.js';
import { until } from '../../../scripts/world/until.js';
import { startNotifyReceiver } from '../../fixtures/notify-receiver.js';

t.test('outpost run: STATUS while starting, READY=1 when up, watchdog pings, STOPPING=1 and exit 0 on SIGTERM', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const receiver = await startNotifyReceiver(join(world.dir, 'notify.sock'));
  t.teardown(() => receiver.close());

  const daemon = world.run({ NOTIFY_SOCKET: receiver.address, WATCHDOG_USEC: '400000' });
  t.teardown(() => daemon.kill('SIGKILL'));
  const seen: string[] = [];
  while (!seen.some((d) => d.includes('READY=1'))) seen.push((await receiver.next(15_000)).data);
  t.equal(seen[0], 'EXTEND_TIMEOUT_USEC=60000000\n', 'more start time asked first, before the domains load');
  t.ok(seen.some((d) => d.startsWith('STATUS=starting store')), 'STATUS reported while starting');
  t.match(seen.at(-1), /READY=1\nSTATUS=running/);

  const pings = [(await receiver.next(2000)).data, (await receiver.next(2000)).data];
  t.same(pings, ['WATCHDOG=1\n', 'WATCHDOG=1\n'], 'pings at half of WATCHDOG_USEC');

  const status = await world.cli(['status', '--json']);
  t.equal(status.exitCode, 0, status.stderr);
  const doc = JSON.parse(status.stdout) as { deviceId: string; pid: number; link: { state: string }; bootedCommit: unknown };
  t.equal(doc.deviceId, 'gw-test-1');
  t.equal(doc.pid, daemon.pid);
  t.equal(doc.link.state, 'disabled', 'no broker configured');
  t.equal(statSync(world.socketPath).mode & 0o777, 0o660, 'API socket mode from config');

  const human = await world.cli(['status']);
  t.match(human.stdout, /device:\s+gw-test-1/);

  daemon.kill('SIGTERM');
  const rest: string[] = [];
  for (;;) {
    const d = (await receiver.next(5000)).data;
    rest.push(d);
    if (d.includes('STOPPING=1')) break;
  }
  const result = await daemon;
  t.equal(result.exitCode, 0, 'clean stop exits 0');
  t.notOk(existsSync(world.socketPath), 'API socket removed on stop');
});

t.test('SIGTERM while the services are still starting: they finish starting, then stop cleanly, exit 0', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const receiver = await startNotifyReceiver(join(world.dir, 'notify.sock'));
  t.teardown(() => receiver.close());
  const daemon = world.run({ NOTIFY_SOCKET: receiver.address });
  t.teardown(() => daemon.kill('SIGKILL'));
  while (!(await receiver.next(15_000)).data.startsWith('STATUS=starting store'));
  daemon.kill('SIGTERM');
  const result = await daemon;
  t.equal(result.signal, undefined, 'not killed by the signal');
  t.equal(result.exitCode, 0, result.all);
  t.match(result.all, /stopped/);
  t.notOk(existsSync(join(world.stateDir, 'running')), 'run marker removed: the next start sees a clean stop');
});

t.test('a blocked event loop stops the watchdog pings (so systemd would kill it)', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const receiver = await startNotifyReceiver(join(world.dir, 'notify.sock'));
  t.teardown(() => receiver.close());
  // The daemon wedges its own event loop (the process keeps running, unlike under SIGSTOP): a
  // ping sent from anywhere but that loop would still arrive and fail this test.
  const daemon = world.run({ NOTIFY_SOCKET: receiver.address, WATCHDOG_USEC: '200000', OUTPOST_FAULT_BLOCK_LOOP_MS: '1500' });
  t.teardown(() => daemon.kill('SIGKILL'));
  while (!(await receiver.next(15_000)).data.includes('READY=1'));
  await receiver.next(2000);
  daemon.kill('SIGUSR2');
  await new Promise((resolve) => setTimeout(resolve, 300));
  receiver.pending();
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.same(receiver.pending(), [], 'no pings while the event loop is blocked');
  t.equal((await receiver.next(3000)).data, 'WATCHDOG=1\n', 'pings resume once it runs again');
  daemon.kill('SIGTERM');
  t.equal((await daemon).exitCode, 0);
});

t.test('an event loop held longer than health.maxLoopLagMs withholds the pings after it runs again, and STATUS= names the event loop', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  world.writeConfig({ health: { maxLoopLagMs: 300 } });
  const receiver = await startNotifyReceiver(join(world.dir, 'notify.sock'));
  t.teardown(() => receiver.close());
  const daemon = world.run({ NOTIFY_SOCKET: receiver.address, WATCHDOG_USEC: '200000', OUTPOST_FAULT_BLOCK_LOOP_MS: '1000' });
  t.teardown(() => daemon.kill('SIGKILL'));
  while (!(await receiver.next(15_000)).data.includes('READY=1'));
  t.equal((await receiver.next(2000)).data, 'WATCHDOG=1\n', 'pinging before');
  daemon.kill('SIGUSR2');
  let status: string | undefined;
  while (status === undefined) {
    const d = (await receiver.next(5000)).data;
    if (d.startsWith('STATUS=')) status = d;
  }
  t.equal(status, 'STATUS=watchdog withheld: event-loop not making progress\n');
  receiver.pending();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.same(receiver.pending().filter((d) => d.data.includes('WATCHDOG=1')), [], 'no pings while the lag is held against it, though the loop runs again');
  daemon.kill('SIGTERM');
  t.equal((await daemon).exitCode, 0);
});

t.test('a bad config: every problem on stderr as file: field: message, exit 78, never READY', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  world.writeConfig({ deviceId: 'bad/id', lifecycl: {} });
  const receiver = await startNotifyReceiver(join(world.dir, 'notify.sock'));
  t.teardown(() => receiver.close());
  const result = await world.run({ NOTIFY_SOCKET: receiver.address });
  t.equal(result.exitCode, 78);
  t.match(result.all, `${world.configPath}: deviceId: must be`);
  t.match(result.all, `${world.configPath}: lifecycl: unknown key`);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(receiver.pending(), [], 'nothing was sent to systemd');

  const validate = await world.cli(['config', 'validate', world.configPath]);
  t.equal(validate.exitCode, 78);
  t.equal(validate.stderr, result.all?.trim(), 'config validate prints the same problems');
});

t.test('config validate accepts a good file', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const r = await world.cli(['config', 'validate', world.configPath]);
  t.equal(r.exitCode, 0);
  t.equal(r.stdout, `${world.configPath}: ok`);
});

t.test('the store locked by another process: a clear error and exit 75, not a crash', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const holder = fork(new URL('../../fixtures/hold-store.ts', import.meta.url), [join(world.stateDir, 'store')], { execArgv: ['--import=tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise((resolve) => holder.once('message', resolve));
  const result = await world.run();
  t.equal(result.exitCode, 75);
  t.match(result.all, /state store .* is locked by another process/);
  t.notMatch(result.all, /at .*\.js:\d+/, 'no stack trace for an expected condition');
});

t.test('an overlay from a newer release (keys this one does not know) does not stop the daemon: they are ignored with a warning', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(world.stateDir, { recursive: true });
  const overlay = join(world.stateDir, 'config.json');
  writeFileSync(overlay, JSON.stringify({ deviceId: 'gw-from-overlay', health: { futureKey: 1 } }));
  const run = world.run();
  t.teardown(() => run.kill('SIGKILL'));
  await until('API socket', () => (existsSync(world.socketPath) ? true : undefined));
  run.kill('SIGTERM');
  const result = await run;
  t.equal(result.exitCode, 0, 'it ran and stopped cleanly (before: exit 78, which systemd does not restart)');
  t.match(result.all, /a setting of the config overlay is ignored/);
  t.match(result.all, overlay);
  t.match(result.all, 'health.futureKey');
  t.match(result.all, '"deviceId":"gw-from-overlay"', 'what it does know applies');
});

t.test('a corrupt store is repaired on start with a copy kept; the daemon comes up', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const first = world.run();
  await until('API socket', () => (existsSync(world.socketPath) ? true : undefined));
  first.kill('SIGTERM');
  await first;
  const { readdirSync } = await import('node:fs');
  const storeDir = join(world.stateDir, 'store');
  for (const f of readdirSync(storeDir)) if (f.startsWith('MANIFEST')) writeFileSync(join(storeDir, f), 'garbage');
  const second = world.run();
  t.teardown(() => second.kill('SIGKILL'));
  await until('API socket', () => (existsSync(world.socketPath) ? true : undefined));
  second.kill('SIGTERM');
  const result = await second;
  t.equal(result.exitCode, 0);
  t.match(result.all, /state store was corrupt and has been repaired/);
  t.ok(readdirSync(world.stateDir).some((f) => f.startsWith('store.corrupt-')), 'copy of the damaged store kept');
});

t.test('after SIGKILL the next daemon starts despite the stale socket file, and warns of the unclean stop', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const first = world.run();
  await until('API socket and run marker', () => (existsSync(world.socketPath) && existsSync(join(world.stateDir, 'running')) ? true : undefined));
  first.kill('SIGKILL');
  await first;
  t.ok(existsSync(world.socketPath), 'SIGKILL left the socket file behind');
  const second = world.run();
  t.teardown(() => second.kill('SIGKILL'));
  const status = await until('status', async () => {
    const r = await world.cli(['status', '--json']);
    return r.exitCode === 0 ? r : undefined;
  });
  t.equal((JSON.parse(status.stdout) as { pid: number }).pid, second.pid);
  second.kill('SIGTERM');
  const result = await second;
  t.equal(result.exitCode, 0);
  t.match(result.stdout, new RegExp(`"level":"warn".*"msg":"the outpost before this one \\(pid ${first.pid}, started [^)]+\\) did not stop cleanly: killed \\(watchdog, out of memory\\) or crashed"`), 'the journal learns of it');
  // After that clean stop the next start has nothing to warn of.
  const third = world.run();
  await until('status', async () => ((await world.cli(['status'])).exitCode === 0 ? true : undefined));
  third.kill('SIGTERM');
  t.notMatch((await third).stdout, /did not stop cleanly/);
});

t.test('outpost status without a daemon says so and exits 69', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  const r = await world.cli(['status']);
  t.equal(r.exitCode, 69);
  t.match(r.stderr, /cannot reach outpost at .*api\.sock.*is the outpost daemon running\?/);
});

t.test('--help works on every command; unknown commands and options exit 64', async (t) => {
  const world = deviceWorld();
  t.teardown(world.cleanup);
  for (const args of [['--help'], ['run', '--help'], ['status', '--help'], ['config', 'validate', '--help'], ['version', '--help']]) {
    const r = await world.cli(args);
    t.equal(r.exitCode, 0, args.join(' '));
    t.match(r.stdout, /^Usage: outpost/, args.join(' '));
  }
  t.equal((await world.cli(['frobnicate'])).exitCode, 64);
  t.equal((await world.cli(['status', '--jsn'])).exitCode, 64);
  t.equal((await world.cli(['config', 'validate'])).exitCode, 64);
});
