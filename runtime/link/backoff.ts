/**
 * Reconnect delays: capped exponential backoff with jitter.
 *
 * Why jitter: after a broker restart every gateway of a fleet loses its connection in the same
 * second; without randomness they would all come back in lock-step waves. The delay for attempt
 * n is drawn uniformly from [min, min(max, min * 2^(n+1))], so even the first retry is spread
 * over [min, 2*min], and the spread keeps doubling until the cap.
 */

/**
 * Delay in ms before reconnect attempt `attempt` (0 = first retry after a failure or a drop).
 *
 * Always an integer in [minMs, maxMs]; `random` must return values in [0, 1) like Math.random.
 * Out-of-range inputs are clamped rather than thrown on, because a reconnect loop must never die.
 */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const min = Math.max(0, Number.isFinite(minMs) ? minMs : 0);
  const max = Math.max(min, Number.isFinite(maxMs) ? maxMs : min);
  const n = Number.isFinite(attempt) ? Math.max(0, Math.floor(attempt)) : 0;
  // 2 ** n overflows to Infinity for large n, and Math.min then yields the cap: no loop, no NaN.
  const ceiling = Math.min(max, min * 2 ** (n + 1));
  const drawn = random();
  const r = Number.isFinite(drawn) ? Math.min(Math.max(drawn, 0), 1) : 0;
  return Math.min(max, Math.floor(min + r * (ceiling - min)));
}
