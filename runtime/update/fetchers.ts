/**
 * Where TUF metadata comes from: the update server over HTTP(S), or an unpacked offline bundle.
 * Both stop reading past the size limit the client gives (a hostile server cannot make the
 * device buffer an endless body) and report "not found" as undefined, as the client expects.
 *
 * Every HTTP fetch is bounded in time as a whole, not only by a socket-idle timer: a server that
 * trickles one byte just inside the idle timeout would otherwise hold a check for days (TUF's
 * slow-retrieval attack; the CDN is untrusted).
 */
import { open } from 'node:fs/promises';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join, normalize, sep } from 'node:path';
import { OutpostError } from '../errors.js';
import type { Fetcher } from './tuf/index.js';

/** Limits of {@link httpFetcher}. */
export interface HttpFetcherOptions {
  /** The whole fetch of one metadata file must end within this (default 60 s, `update.metadataDeadlineSec`). */
  deadlineMs?: number;
  /** No bytes for this long fails the request (default 30 s). */
  idleTimeoutMs?: number;
  /** Cancels every fetch of this fetcher, e.g. a deadline around the whole check. */
  signal?: AbortSignal;
}

/** Default total deadline of one metadata fetch (tuf-js allows 100 s; our files are small). */
export const defaultMetadataDeadlineMs = 60_000;

const unavailable = (message: string, cause?: unknown): OutpostError =>
  new OutpostError('UPDATE_UNAVAILABLE', message, { transient: true, ...(cause === undefined ? {} : { cause }) });

/** Fetches metadata relative to `baseUrl` (which should end with `/`). */
export function httpFetcher(baseUrl: string, options: HttpFetcherOptions = {}): Fetcher {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const deadlineMs = options.deadlineMs ?? defaultMetadataDeadlineMs;
  const idleMs = options.idleTimeoutMs ?? 30_000;
  const external = options.signal;
  // A function, not a property read, so narrowing from an earlier check does not go stale across awaits.
  const isCancelled = (): boolean => external?.aborted === true;

  /** Why a fetch was stopped from outside: the caller's reason, with the URL added. */
  const cancelled = (url: URL): OutpostError => {
    const reason: unknown = external?.reason;
    if (reason instanceof OutpostError) return new OutpostError(reason.code, `${reason.message} (while fetching ${url.href})`, { cause: reason, transient: reason.transient });
    return unavailable(`fetching ${url.href} was cancelled: ${reason instanceof Error ? reason.message : String(reason)}`, reason);
  };

  /** One GET; `signal` aborts it (the deadline or the caller). */
  const getOnce = (url: URL, maxBytes: number, signal: AbortSignal): Promise<Uint8Array | undefined> =>
    new Promise((resolve, reject) => {
      const get = url.protocol === 'https:' ? httpsGet : httpGet;
      const req = get(url, { timeout: idleMs, signal, headers: { 'accept-encoding': 'identity', 'user-agent': 'outpost' } }, (res: IncomingMessage) => {
        if (res.statusCode === 404) {
          res.resume();
          resolve(undefined);
          return;
        }
        if (res.statusCode !== 200) {
          res.resume();
          reject(unavailable(`update server answered ${url.href} with HTTP ${res.statusCode}`));
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
        res.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks))));
        // Past the limit the client reports the oversize itself; any other close before the end
        // is a cut body, which parsing would misreport as invalid metadata instead of a retryable fault.
        res.on('close', () => {
          if (oversize) resolve(new Uint8Array(Buffer.concat(chunks)));
          else reject(unavailable(`the connection closed before the end of ${url.href}${res.headers['content-length'] === undefined ? '' : ` (Content-Length ${res.headers['content-length']})`}`));
        });
        res.on('error', () => undefined);
      });
      req.on('timeout', () => req.destroy(new Error(`no data for ${idleMs} ms`)));
      req.on('error', (err) => reject(unavailable(`cannot reach the update server for ${url.href}: ${err.message}`, err)));
    });

  return {
    fetch: async (path, maxBytes) => {
      const url = new URL(path, base);
      if (isCancelled()) throw cancelled(url);
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), deadlineMs);
      const onCancel = (): void => controller.abort();
      external?.addEventListener('abort', onCancel, { once: true });
      try {
        return await getOnce(url, maxBytes, controller.signal);
      } catch (err) {
        if (isCancelled()) throw cancelled(url);
        if (controller.signal.aborted) throw unavailable(`fetching ${url.href} exceeded the ${deadlineMs} ms deadline for one metadata file (update.metadataDeadlineSec)`, err);
        throw err;
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
