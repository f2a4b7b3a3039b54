/**
 * The event loop's lag, measured by a timer that should fire every `tickMs`: how late it fires is
 * how long the loop was held. A loop that stops entirely stops the watchdog pings by itself (they
 * are timers too); this catches the loop that still turns but is held for seconds at a time, so
 * nothing outpost does is on time (checks, command deadlines, the link's keepalive).
 */
import { monotonicMs } from '../platform/index.js';
import type { Service } from './service.js';

/** Options of {@link loopLagMonitor}. */
export interface LoopLagOptions {
  /** Lag above this withholds the watchdog pings. */
  readonly maxLagMs: number;
  /**
   * A lag counts for this long after it was measured. Short on purpose: one stall delays a ping by
   * about this much (WatchdogSec tolerates that); a loop that keeps stalling is held every time a
   * ping comes due, right after a stall, and so gets no pings at all.
   */
  readonly holdMs?: number;
  readonly tickMs?: number;
  readonly nowMs?: () => number;
}

/** A service whose `healthy()` is false while the loop lagged more than `maxLagMs` within `holdMs`. */
export function loopLagMonitor(options: LoopLagOptions): Service & { healthy(): boolean; worstLagMs(): number } {
  const nowMs = options.nowMs ?? monotonicMs;
  const tickMs = options.tickMs ?? 500;
  const holdMs = options.holdMs ?? 2_000;
  let timer: NodeJS.Timeout | undefined;
  let expectedMs = 0;
  // The worst lag within the hold time, and when it was measured.
  let worst = { lagMs: 0, atMs: 0 };
  let lastOverMs: number | undefined;
  const tick = (): void => {
    const now = nowMs();
    const lagMs = Math.max(0, now - expectedMs);
    if (lagMs >= worst.lagMs || now - worst.atMs > holdMs) worst = { lagMs, atMs: now };
    if (lagMs > options.maxLagMs) lastOverMs = now;
    expectedMs = now + tickMs;
  };
  return {
    name: 'event-loop',
    async start() {
      expectedMs = nowMs() + tickMs;
      timer = setInterval(tick, tickMs).unref();
    },
    async stop() {
      clearInterval(timer);
      timer = undefined;
    },
    healthy() {
      // A tick overdue by more than the limit is a lag in progress, not yet measured by a tick.
      const now = nowMs();
      if (timer !== undefined && now - expectedMs > options.maxLagMs) return false;
      return lastOverMs === undefined || now - lastOverMs >= holdMs;
    },
    worstLagMs: () => worst.lagMs,
  };
}
