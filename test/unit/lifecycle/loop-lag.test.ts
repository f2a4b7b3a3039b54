import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { loopLagMonitor } from '../../../runtime/lifecycle/index.js';

const blockLoop = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

t.test('a loop held longer than the limit is unhealthy for the hold time, then healthy again', async (t) => {
  const monitor = loopLagMonitor({ maxLagMs: 150, holdMs: 400, tickMs: 20 });
  await monitor.start();
  t.teardown(() => monitor.stop());
  await sleep(100);
  t.ok(monitor.healthy(), 'a turning loop is healthy');
  blockLoop(400);
  t.notOk(monitor.healthy(), 'a tick overdue by more than the limit counts before it fires');
  await sleep(50);
  t.notOk(monitor.healthy(), 'still unhealthy right after the stall');
  t.ok(monitor.worstLagMs() >= 300, `the stall was measured (${monitor.worstLagMs()} ms)`);
  await sleep(600);
  t.ok(monitor.healthy(), 'healthy once the hold time passed without another stall');
});

t.test('lag below the limit stays healthy', async (t) => {
  const monitor = loopLagMonitor({ maxLagMs: 500, holdMs: 400, tickMs: 20 });
  await monitor.start();
  t.teardown(() => monitor.stop());
  blockLoop(100);
  await sleep(60);
  t.ok(monitor.healthy());
});
