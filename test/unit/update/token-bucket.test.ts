import t from 'tap';
import { createTokenBucket } from '../../../runtime/update/token-bucket.js';

function fakeClock(): { now: () => number; sleep: (ms: number) => Promise<void>; slept: number[] } {
  let now = 0;
  const slept: number[] = [];
  return {
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
    slept,
  };
}

t.test('holds the average rate with no start-up burst beyond a tenth of a second', async (t) => {
  const clock = fakeClock();
  const bucket = createTokenBucket(1000, clock);
  for (let i = 0; i < 10; i++) await bucket.take(500); // 5000 bytes at 1000 B/s
  t.equal(clock.now(), 5000, 'took 5 s of (fake) time');
  t.equal(clock.slept[0], 500, 'even the first chunk waits: the bucket starts empty');
});

t.test('idle time refills only up to the burst', async (t) => {
  const clock = fakeClock();
  const bucket = createTokenBucket(1000, clock);
  await clock.sleep(60_000);
  clock.slept.length = 0;
  await bucket.take(100); // burst = 100 bytes
  t.same(clock.slept, [], 'a tenth of a second of credit');
  await bucket.take(1000);
  t.same(clock.slept, [1000]);
});

t.test('no rate means no limit', async (t) => {
  for (const rate of [undefined, null, 0, -5]) {
    const clock = fakeClock();
    await createTokenBucket(rate, clock).take(1e9);
    t.same(clock.slept, [], `rate ${String(rate)}`);
  }
});
