/**
 * Where TUF metadata comes from: the update server over HTTP(S), or an unpacked offline bundle.
 * Both stop reading past the size limit the client gives (a hostile server cannot make the
 * device buffer an endless body) and report "not found" as undefined, as the client expects.
 *
 * Every HTTP fetch is bounded in time as a whole, not only by a socket-idle timer: a server that
 * trickles one byte just inside the idle timeout would otherwise hold a check for days (TUF's
 * slow-retrieval attack; the CDN is untrusted).
 *
 * Transient failures are retried within the fetch (3 requests, short capped backoff, all inside
 * the deadline), so a blip costs a second instead of a whole check interval. The common one is
 * `socket hang up` (or `read ECONNRESET`) on a reused keep-alive connection: Node 20's default
 * agent keeps sockets open between requests and trusts timers to drop them before the server
 * does (in 20.20: the server's `Keep-Alive: timeout=` hint minus 1 s, else 5 s; Node's own server
 * closes at its keepAliveTimeout + 1 s). A server that closes idle connections without that hint,
 * or a delay longer than that margin between the server's close and the device noticing it (e.g.
 * the event loop busy verifying signatures, a slow emulated gateway behind slirp), has the device
 * write its GET onto a connection the server already closed: it fails before any response.
 * A GET is idempotent, so such a failure is retried at once on a fresh connection (Node's
 * documentation prescribes the same for `request.reusedSocket`).
 */
import { open } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join, normalize, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutpostError } from '../errors.js';
import { silentLogger, type Logger } from '../logs/index.js';
import type { Fetcher } from './tuf/index.js';

/** Limits of {@link httpFetcher}. */
export interface HttpFetcherOptions {
  /** The whole fetch of one metadata file must end within this (default 60 s, `update.metadataDeadlineSec`). */
  deadlineMs?: number;
  /** No bytes for this long fails the request (default 30 s). */
  idleTimeoutMs?: number;
  /** Cancels every fetch of this fetcher, e.g. a deadline around the whole check. */
  signal?: AbortSignal;
  /** Requests per fetch when they fail transiently (default 3). */
  attempts?: number;
  /** First pause between attempts, doubled each time up to 2 s (default 500 ms). */
  retryDelayMs?: number;
  log?: Logger;
}

/** How a failed request may be tried again. */
type Retry = 'now' | 'backoff' | 'no';
type Outcome = { bytes: Uint8Array | undefined } | { error: OutpostError; retry: Retry };

const maxRetryDelayMs = 2_000;
/** What a connection the server closed under a reused request looks like. */
const staleSocketCodes = new Set(['ECONNRESET', 'EPIPE']);

/** Default total deadline of one metadata fetch (tuf-js allows 100 s; our files are small). */
export const defaultMetadataDeadlineMs = 60_000;

const unavailable = (message: string, cause?: unknown): OutpostError =>
  new OutpostError('UPDATE_UNAVAILABLE', message, { transient: true, ...(cause === undefined ? {} : { cause }) });

/** Fetches metadata relative to `baseUrl` (which should end with `/`). */
export function httpFetcher(baseUrl: string, options: HttpFetcherOptions = {}): Fetcher {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const deadlineMs = options.deadlineMs ?? defaultMetadataDeadlineMs;
  const idleMs = options.idleTimeoutMs ?? 30_000;
  const attempts = Math.max(1, options.attempts ?? 3);
  const retryDelayMs = options.retryDelayMs ?? 500;
  const log = options.log ?? silentLogger;
  const external = options.signal;
  // A function, not a property read, so narrowing from an earlier check does not go stale across awaits.
  const isCancelled = (): boolean => external?.aborted === true;

  /** Why a fetch was stopped from outside: the caller's reason, with the URL added. */
  const cancelled = (url: URL): OutpostError => {
    const reason: unknown = external?.reason;
    if (reason instanceof OutpostError) return new OutpostError(reason.code, `${reason.message} (while fetching ${url.href})`, { cause: reason, transient: reason.transient });
    return unavailable(`fetching ${url.href} was cancelled: ${reason instanceof Error ? reason.message : String(reason)}`, reason);
  };

  /** One GET; `signal` aborts it (the deadline or the caller). Never rejects: says whether to retry. */
  const getOnce = (url: URL, maxBytes: number, signal: AbortSignal): Promise<Outcome> =>
    new Promise((resolve) => {
      const fail = (error: OutpostError, retry: Retry): void => resolve({ error, retry });
      let answered = false;
      const get = url.protocol === 'https:' ? httpsGet : httpGet;
      const req = get(url, { timeout: idleMs, signal, headers: { 'accept-encoding': 'identity', 'user-agent': 'outpost' } }, (res: IncomingMessage) => {
        answered = true;
        const status = res.statusCode ?? 0;
        if (status === 404) {
          res.resume();
          resolve({ bytes: undefined });
          return;
        }
        if (status !== 200) {
          res.resume();
          // Overload and gateway errors pass; another 4xx will not change within seconds.
          fail(unavailable(`update server answered ${url.href} with HTTP ${status}`), status >= 500 || status === 408 || status === 429 ? 'backoff' : 'no');
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        let oversize = false;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          chunks.push(chunk);
          if (size > maxBytes) {
            oversize = true;
            res.destroy();
          }
        });
        res.on('end', () => resolve({ bytes: new Uint8Array(Buffer.concat(chunks)) }));
        // Past the limit the client reports the oversize itself; any other close before the end
        // is a cut body, which parsing would misreport as invalid metadata instead of a retryable fault.
        res.on('close', () => {
          if (oversize) resolve({ bytes: new Uint8Array(Buffer.concat(chunks)) });
          else fail(unavailable(`the connection closed before the end of ${url.href}${res.headers['content-length'] === undefined ? '' : ` (Content-Length ${res.headers['content-length']})`}`), 'backoff');
        });
        res.on('error', () => undefined);
      });
      req.on('timeout', () => req.destroy(new Error(`no data for ${idleMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const stale = req.reusedSocket && !answered && staleSocketCodes.has(err.code ?? '');
        fail(unavailable(`cannot reach the update server for ${url.href}: ${err.message}${stale ? ' (on a reused keep-alive connection)' : ''}`, err), stale ? 'now' : 'backoff');
      });
    });

  return {
    fetch: async (path, maxBytes) => {
      const url = new URL(path, base);
      if (isCancelled()) throw cancelled(url);
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), deadlineMs);
      const onCancel = (): void => controller.abort();
      external?.addEventListener('abort', onCancel, { once: true });
      const stopped = (cause: unknown): OutpostError =>
        isCancelled() ? cancelled(url) : unavailable(`fetching ${url.href} exceeded the ${deadlineMs} ms deadline for one metadata file (update.metadataDeadlineSec)`, cause);
      try {
        for (let attempt = 1; ; attempt++) {
          const outcome = await getOnce(url, maxBytes, controller.signal);
          if ('bytes' in outcome) return outcome.bytes;
          if (controller.signal.aborted) throw stopped(outcome.error);
          if (outcome.retry === 'no' || attempt >= attempts) throw outcome.error;
          const delayMs = outcome.retry === 'now' ? 0 : Math.min(maxRetryDelayMs, retryDelayMs * 2 ** (attempt - 1));
          log.info('metadata fetch failed, retrying', { url: url.href, attempt, attempts, delayMs, reason: outcome.error.message });
          await sleep(delayMs, undefined, { signal: controller.signal }).catch(() => undefined);
          if (controller.signal.aborted) throw stopped(outcome.error);
        }
      } finally {
        clearTimeout(timer);
        external?.removeEventListener('abort', onCancel);
      }
    },
  };
}

/** Reads metadata from a directory (an unpacked bundle); paths cannot escape it. */
export function dirFetcher(dir: string): Fetcher {
  return {
    fetch: async (path, maxBytes) => {
      const full = normalize(join(dir, path));
      if (!full.startsWith(normalize(dir) + sep)) throw new OutpostError('UPDATE_METADATA_INVALID', `metadata path ${path} leaves the bundle`);
      let handle;
      try {
        handle = await open(full, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      try {
        const buffer = Buffer.alloc(maxBytes + 1);
        const { bytesRead } = await handle.read(buffer, 0, maxBytes + 1, 0);
        return new Uint8Array(buffer.subarray(0, bytesRead));
      } finally {
        await handle.close();
      }
    },
  };
}
