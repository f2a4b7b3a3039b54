/**
 * Reads of /proc, /sys and statfs(2) cannot be cancelled: they run on libuv's thread pool and a
 * hung NFS mount or an i2c thermal sensor can block one for minutes. A probe must still return at
 * its abort, so it stops waiting for such a call (the call itself finishes in the background).
 */

/** Thrown by {@link abortable} when the signal ends the wait. */
export class ProbeAborted extends Error {
  override readonly name = 'ProbeAborted';
}

/**
 * Abandoned calls still running. libuv's pool has 4 threads by default and the store's writes run
 * there too: a check on a hung mount every 30 s would take them all within minutes, and the
 * daemon with them. Past this many, probes start no new such call until one comes back.
 */
export const maxAbandonedCalls = 2;
let abandonedCalls = 0;

/** Thrown by {@link abortable} instead of starting a call while too many abandoned ones still hang. */
export class CallsStillHung extends Error {
  override readonly name = 'CallsStillHung';
}

/**
 * `start()`'s result, or a {@link ProbeAborted} rejection as soon as `signal` aborts; the call is
 * not started while {@link maxAbandonedCalls} abandoned ones are still running.
 */
export function abortable<T>(signal: AbortSignal, start: () => Promise<T>): Promise<T> {
  if (signal.aborted) return Promise.reject(new ProbeAborted('aborted'));
  if (abandonedCalls >= maxAbandonedCalls) {
    return Promise.reject(new CallsStillHung(`${abandonedCalls} earlier file system calls of health checks are still hung (a hung mount or sensor?); none is started until one comes back`));
  }
  const work = start();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      abandonedCalls += 1;
      // The abandoned call may still fail; nobody waits for it any more.
      work.then(
        () => (abandonedCalls -= 1),
        () => (abandonedCalls -= 1),
      );
      reject(new ProbeAborted('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
