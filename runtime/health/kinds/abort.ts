/**
 * Reads of /proc, /sys and statfs(2) cannot be cancelled: they run on libuv's thread pool and a
 * hung NFS mount or an i2c thermal sensor can block one for minutes. A probe must still return at
 * its abort, so it stops waiting for such a call (the call itself finishes in the background).
 */

/** Thrown by {@link abortable} when the signal ends the wait. */
export class ProbeAborted extends Error {
  override readonly name = 'ProbeAborted';
}

/** `work`'s result, or a {@link ProbeAborted} rejection as soon as `signal` aborts. */
export function abortable<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  if (signal.aborted) {
    // The abandoned call may still fail; nobody waits for it any more.
    work.catch(() => undefined);
    return Promise.reject(new ProbeAborted('aborted'));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new ProbeAborted('aborted'));
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
