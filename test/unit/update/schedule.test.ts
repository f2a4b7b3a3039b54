import t from 'tap';
import { defaultSchedule, retryDelayMs } from '../../../runtime/update/schedule.js';

const at = (random: number) => ({ ...defaultSchedule, random: () => random });

t.test('retry delays double from retryMinMs, stop at retryMaxMs and at the interval, and keep half their step', async (t) => {
  const hour = 3_600_000;
  t.same([1, 2, 3, 4, 5, 6, 40].map((n) => retryDelayMs(n, at(0.999999), hour)), [30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000]);
  t.same([1, 2, 6].map((n) => retryDelayMs(n, at(0), hour)), [15_000, 30_000, 300_000], 'the random half never takes more than half');
  t.equal(retryDelayMs(10, at(0.999999), 60_000), 60_000, 'never beyond the check interval');
  const spread = new Set(Array.from({ length: 50 }, () => retryDelayMs(3, defaultSchedule, hour)));
  t.ok(spread.size > 10, 'Math.random spreads a fleet');
});
