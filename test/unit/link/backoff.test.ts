import t from 'tap';
import fc from 'fast-check';
import { backoffDelayMs } from '../../../runtime/link/backoff.js';

t.test('first retry is spread over [min, 2*min]', async (t) => {
  t.equal(backoffDelayMs(0, 1000, 60_000, () => 0), 1000);
  t.equal(backoffDelayMs(0, 1000, 60_000, () => 0.5), 1500);
  t.equal(backoffDelayMs(0, 1000, 60_000, () => 0.999999), 1999);
});

t.test('the upper bound doubles per attempt until the cap', async (t) => {
  const top = (attempt: number): number => backoffDelayMs(attempt, 100, 5_000, () => 0.9999999);
  t.same([0, 1, 2, 3, 4, 5, 6, 10].map(top), [199, 399, 799, 1599, 3199, 4999, 4999, 4999]);
});

t.test('capped for huge attempts and odd inputs, never NaN', async (t) => {
  t.equal(backoffDelayMs(5000, 100, 5_000, () => 0.9999999), 4999);
  t.equal(backoffDelayMs(Number.POSITIVE_INFINITY, 100, 5_000, () => 0), 100);
  t.equal(backoffDelayMs(-3, 100, 5_000, () => 0), 100);
  t.equal(backoffDelayMs(2, 100, 50, () => 0.5), 100, 'max below min collapses to min');
  t.equal(backoffDelayMs(1, 100, 5_000, () => 7), 400, 'a misbehaving random source is clamped');
  t.equal(backoffDelayMs(1, 100, 5_000, () => Number.NaN), 100);
});

t.test('jitter: different random values give different delays', async (t) => {
  const values = new Set([0.1, 0.3, 0.6, 0.9].map((r) => backoffDelayMs(3, 100, 60_000, () => r)));
  t.equal(values.size, 4);
});

t.test('property: integer within [min, min(max, min*2^(n+1))]', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2000 }),
      fc.integer({ min: 1, max: 600_000 }),
      fc.integer({ min: 0, max: 3_600_000 }),
      fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      (attempt, min, extra, r) => {
        const max = min + extra;
        const delay = backoffDelayMs(attempt, min, max, () => r);
        const ceiling = Math.min(max, min * 2 ** (attempt + 1));
        return Number.isInteger(delay) && delay >= min && delay <= ceiling && delay <= max;
      },
    ),
  );
  t.pass('property held');
});

t.test('property: the bound never shrinks as attempts grow', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 0, max: 1_000_000 }), (attempt, min, extra) => {
      const hi = (n: number): number => backoffDelayMs(n, min, min + extra, () => 0.9999999999);
      return hi(attempt + 1) >= hi(attempt);
    }),
  );
  t.pass('property held');
});
