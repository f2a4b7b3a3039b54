import t from 'tap';
import { Supervisor, type Service, type Timers } from '../../../runtime/lifecycle/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';

/** Manual timers: tests fire intervals and timeouts explicitly instead of waiting. */
function manualTimers() {
  const intervals = new Map<number, () => void>();
  const timeouts = new Map<number, () => void>();
  let next = 1;
  const timers: Timers = {
    setInterval: (fn) => (intervals.set(next, fn), next++),
    clearInterval: (h) => void intervals.delete(h as number),
    setTimeout: (fn) => (timeouts.set(next, fn), next++),
    clearTimeout: (h) => void timeouts.delete(h as number),
  };
  return { timers, tickIntervals: () => [...intervals.values()].forEach((fn) => fn()), fireTimeouts: () => [...timeouts.values()].forEach((fn) => fn()), intervals };
}

function recorder() {
  const events: string[] = [];
  const notify = async (fields: Record<string, string>) => {
    events.push(Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' '));
  };
  const service = (name: string, opts: { failStart?: boolean; hangStop?: boolean; healthy?: () => boolean } = {}): Service => ({
    name,
    start: async () => {
      events.push(`start ${name}`);
      if (opts.failStart) throw new Error(`${name} broke`);
    },
    stop: async () => {
      events.push(`stop ${name}`);
      if (opts.hangStop) await new Promise(() => undefined);
    },
    ...(opts.healthy ? { healthy: opts.healthy } : {}),
  });
  return { events, notify, service };
}

t.test('starts in order and sends READY=1 only after every service is up', async (t) => {
  const r = recorder();
  const sup = new Supervisor({ services: [r.service('store'), r.service('link'), r.service('api')], notify: r.notify, log: silentLogger, stopTimeoutMs: 1000 });
  await sup.start();
  t.same(r.events, ['STATUS=starting store', 'start store', 'STATUS=starting link', 'start link', 'STATUS=starting api', 'start api', 'READY=1 STATUS=running']);
  await sup.stop();
  t.same(r.events.slice(-4), ['STOPPING=1 STATUS=stopping', 'stop api', 'stop link', 'stop store']);
});

t.test('a failed start stops what was started, in reverse, and never sends READY', async (t) => {
  const r = recorder();
  const sup = new Supervisor({ services: [r.service('a'), r.service('b'), r.service('c', { failStart: true }), r.service('d')], notify: r.notify, log: silentLogger, stopTimeoutMs: 1000 });
  await t.rejects(sup.start(), { code: 'INTERNAL', message: /service c failed to start: c broke/ });
  t.notOk(r.events.some((e) => e.startsWith('READY')), 'no READY');
  t.notOk(r.events.includes('start d'), 'later services are not started');
  t.same(r.events.filter((e) => e.startsWith('stop')), ['stop b', 'stop a']);
});

t.test('stop is bounded: a hanging service is abandoned with STOP_TIMEOUT', async (t) => {
  const r = recorder();
  const m = manualTimers();
  const sup = new Supervisor({ services: [r.service('a'), r.service('stuck', { hangStop: true })], notify: r.notify, log: silentLogger, stopTimeoutMs: 50, timers: m.timers });
  await sup.start();
  const stopped = sup.stop();
  await new Promise((resolve) => setImmediate(resolve));
  m.fireTimeouts();
  await t.rejects(stopped, { code: 'STOP_TIMEOUT' });
  t.equal(sup.stop(), sup.stop(), 'stop is idempotent');
});

t.test('the watchdog is fed only while every service is healthy', async (t) => {
  const r = recorder();
  const m = manualTimers();
  let linkHealthy = true;
  const sup = new Supervisor({
    services: [r.service('a'), r.service('link', { healthy: () => linkHealthy })],
    notify: r.notify,
    log: silentLogger,
    stopTimeoutMs: 1000,
    watchdogIntervalMs: 5000,
    timers: m.timers,
  });
  await sup.start();
  const pings = () => r.events.filter((e) => e === 'WATCHDOG=1').length;
  m.tickIntervals();
  m.tickIntervals();
  t.equal(pings(), 2);
  linkHealthy = false;
  m.tickIntervals();
  t.equal(pings(), 2, 'no ping while link is unhealthy');
  linkHealthy = true;
  m.tickIntervals();
  t.equal(pings(), 3, 'pings resume when healthy again');
  await sup.stop();
  t.equal(m.intervals.size, 0, 'the ping timer is cleared on stop');
});

t.test('no watchdog timer when systemd does not watch the daemon', async (t) => {
  const r = recorder();
  const m = manualTimers();
  const sup = new Supervisor({ services: [r.service('a')], notify: r.notify, log: silentLogger, stopTimeoutMs: 1000, timers: m.timers });
  await sup.start();
  t.equal(m.intervals.size, 0);
  await sup.stop();
});

t.test('while services start, systemd is asked for more time, up to the cap; none once READY', async (t) => {
  const r = recorder();
  const m = manualTimers();
  let finishStart!: () => void;
  const slow: Service = { name: 'update', start: () => new Promise<void>((resolve) => (finishStart = resolve)), stop: async () => undefined };
  const sup = new Supervisor({ services: [slow], notify: r.notify, log: silentLogger, stopTimeoutMs: 1000, timers: m.timers, startExtension: { byMs: 60_000, maxMs: 90_000 } });
  const started = sup.start();
  await new Promise((resolve) => setImmediate(resolve));
  for (let i = 0; i < 5; i++) m.tickIntervals();
  const extensions = r.events.filter((e) => e.startsWith('EXTEND_TIMEOUT_USEC'));
  t.same(extensions, ['EXTEND_TIMEOUT_USEC=60000000', 'EXTEND_TIMEOUT_USEC=60000000', 'EXTEND_TIMEOUT_USEC=60000000'], 'every 30 s for 90 s, then no more: a hung start still times out');
  finishStart();
  await started;
  t.equal(m.intervals.size, 0, 'no extension timer left once READY');
  t.ok(r.events.at(-1)?.startsWith('READY=1'));
});

t.test('a stalled service is named in STATUS= while pings are withheld, and running is shown again after', async (t) => {
  const r = recorder();
  const m = manualTimers();
  let storeMoves = true;
  const sup = new Supervisor({ services: [r.service('store', { healthy: () => storeMoves }), r.service('health')], notify: r.notify, log: silentLogger, stopTimeoutMs: 1000, watchdogIntervalMs: 5000, timers: m.timers });
  await sup.start();
  storeMoves = false;
  m.tickIntervals();
  m.tickIntervals();
  t.same(r.events.filter((e) => e.startsWith('STATUS=watchdog')), ['STATUS=watchdog withheld: store not making progress'], 'named once, not at every tick');
  storeMoves = true;
  m.tickIntervals();
  t.same(r.events.slice(-2), ['STATUS=running', 'WATCHDOG=1']);
  await sup.stop();
});

t.test('the hardware watchdog is armed after start, fed only while every service moves, and disarmed by an orderly stop', async (t) => {
  const r = recorder();
  const m = manualTimers();
  let moving = true;
  const calls: string[] = [];
  const sup = new Supervisor({
    services: [r.service('health', { healthy: () => moving })],
    notify: r.notify,
    log: silentLogger,
    stopTimeoutMs: 1000,
    timers: m.timers,
    hardwareWatchdog: () => {
      calls.push('open');
      return { path: '/dev/watchdog', timeoutSec: 30, keepalive: () => void calls.push('keepalive'), close: ({ disarm }) => void calls.push(`close disarm=${disarm}`) };
    },
  });
  await sup.start();
  t.same(calls, ['open']);
  m.tickIntervals();
  moving = false;
  m.tickIntervals();
  moving = true;
  m.tickIntervals();
  t.same(calls, ['open', 'keepalive', 'keepalive'], 'no keepalive while a service is stalled');
  await sup.stop();
  t.same(calls.at(-1), 'close disarm=true');
  t.equal(m.intervals.size, 0, 'no timer left');
});

t.test('a hardware watchdog that cannot be opened is reported and the daemon runs on', async (t) => {
  const r = recorder();
  const sup = new Supervisor({
    services: [r.service('a')],
    notify: r.notify,
    log: silentLogger,
    stopTimeoutMs: 1000,
    hardwareWatchdog: () => {
      throw new Error('no such device');
    },
  });
  await sup.start();
  t.ok(r.events.includes('READY=1 STATUS=running'));
  await sup.stop();
});
