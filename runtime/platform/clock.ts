/**
 * The two clocks of the host (STYLE 8, 16). The wall clock jumps: a gateway without an RTC starts
 * at its last saved time (or 1970) and NTP moves it by months when it first syncs, possibly in the
 * middle of an update. So the wall clock is for reports and signed expiry only; windows, timeouts
 * and backoffs run on CLOCK_MONOTONIC, which never jumps but starts again at every boot: a
 * persisted reading means something only together with the boot id it was taken in.
 */

/** Both clocks, injected wherever time is measured so tests can move either. */
export interface Clock {
  /** The wall clock: for reports, logs and TUF expiry. */
  now(): Date;
  /** CLOCK_MONOTONIC in ms: for windows and timeouts within one boot. */
  monotonicMs(): number;
}

/**
 * CLOCK_MONOTONIC in ms. `process.hrtime` reads it (libuv `uv_hrtime`), so the value is the one
 * every process of this boot sees. It stands still while the system is suspended, which gateways
 * are not.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** The host's clocks. */
export const systemClock: Clock = { now: () => new Date(), monotonicMs };
