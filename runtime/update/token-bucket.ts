/**
 * A token bucket for the download bandwidth cap. Tokens are bytes; they accrue at `rate` per
 * second up to a small burst (a tenth of a second's worth), so a cap holds over any window longer
 * than that instead of allowing a one-second burst at start. A chunk larger than the balance is
 * taken on credit and the caller sleeps until the balance is back at zero. Callers pass at most
 * `sliceBytes` at a time: a socket's 64 KiB chunk at a 1 KiB/s cap would otherwise be one silent
 * minute, with no progress and no way to stop.
 */
import { setTimeout as sleepMs } from 'node:timers/promises';

/** Limits a byte stream to a rate; share one bucket to cap several streams together. */
export interface TokenBucket {
  /** Resolves once `bytes` may pass. */
  take(bytes: number): Promise<void>;
  /** The most to take at once: a quarter second's worth (Infinity without a limit). */
  readonly sliceBytes: number;
}

/** Clock and sleep, injectable for tests; defaults are monotonic time and timers. */
export interface BucketClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: BucketClock = { now: () => performance.now(), sleep: (ms) => sleepMs(ms) };

/** A bucket passing `bytesPerSec` on average; null or a non-positive rate means no limit. */
export function createTokenBucket(bytesPerSec: number | null | undefined, clock: BucketClock = realClock): TokenBucket {
  if (bytesPerSec === null || bytesPerSec === undefined || !(bytesPerSec > 0)) return { take: () => Promise.resolve(), sliceBytes: Infinity };
  const rate = bytesPerSec;
  const burst = Math.max(1, rate / 10);
  let tokens = 0;
  let last = clock.now();
  return {
    sliceBytes: Math.max(1, Math.floor(rate / 4)),
    async take(bytes) {
      const now = clock.now();
      tokens = Math.min(burst, tokens + ((now - last) / 1000) * rate);
      last = now;
      tokens -= bytes;
      if (tokens < 0) await clock.sleep((-tokens / rate) * 1000);
    },
  };
}
