/**
 * Resumable HTTP(S) downloader for update files (static deltas, bundles), node:http only.
 *
 * Invariants:
 * - Bytes land in `<dir>/<name>.part`; the final name appears only after length and sha256
 *   match the signed expectation, the file is fsync'd, renamed, and the directory fsync'd. A file
 *   under the final name is therefore always complete and verified.
 * - A `.part` survives errors, daemon restarts and reboots (it is fsync'd after every attempt);
 *   the next call re-hashes it and asks for the rest with `Range: bytes=<size>-`. A server that
 *   ignores the range (200) restarts the file from 0; 416 discards the part.
 * - Never more than `expectedLength` bytes are written: a longer Content-Length or body aborts.
 * - Free space (`statfs`) is checked before the first byte: the rest of the download plus the
 *   apply headroom must fit, else DISK_SPACE, so an update never fills the disk.
 * - A verification failure (DOWNLOAD_VERIFY) deletes the part: resuming bad bytes cannot help.
 *   Transport failures (DOWNLOAD_FAILED, transient) keep it.
 * - A request slower than the minimum average rate after its grace period is cut off (python-tuf's
 *   MIN_AVERAGE_DOWNLOAD_SPEED): an idle timer alone lets a server trickle a byte at a time for
 *   days, and every trickled chunk would look like progress. The time our own bandwidth cap holds
 *   reading back is not counted, so the cap and the floor never fight.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import { syncDir } from '../platform/index.js';
import { createTokenBucket, type TokenBucket } from './token-bucket.js';

/** Progress as reported to the caller (and on to `outpost update status`). */
export interface DownloadProgress {
  bytes: number;
  total: number;
  rateBps: number;
}

/** One file to fetch, with the length and sha256 the signed metadata promises. */
export interface DownloadRequest {
  url: string;
  dir: string;
  /** Final file name inside `dir` (no slashes). */
  name: string;
  expectedLength: number;
  /** Lower-case hex sha256 of the whole file. */
  sha256: string;
  /** Extra free space the following apply step needs (e.g. delta apply into the repo). */
  applyHeadroomBytes?: number;
  /** Called at most every `progressIntervalMs`. */
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
}

/** What a download did. */
export interface DownloadResult {
  path: string;
  bytes: number;
  /** Bytes already in the `.part` when the call started (0 on a fresh start). */
  resumedFrom: number;
  /** Body bytes received over the network during this call. */
  transferred: number;
  requests: number;
  /** The final file already existed and verified: nothing was fetched. */
  cached: boolean;
}

/** Free space of the filesystem holding a path; `bavail` blocks of `bsize` bytes. */
export type StatFs = (path: string) => Promise<{ bavail: number; bsize: number }>;

/** Downloader settings; the world (statfs, TLS trust) is injected. */
export interface DownloaderOptions {
  log: Logger;
  /** Bandwidth cap in bytes per second for all downloads of this downloader; absent = none. */
  bandwidthBytesPerSec?: number;
  /** A request with no bytes for this long fails (default 30 s). */
  idleTimeoutMs?: number;
  /** After the grace period, a request averaging fewer bytes per second since it started fails (default 1024; 0 = off). */
  minRateBytesPerSec?: number;
  /** How long a request may run before the minimum rate applies (default 30 s). */
  rateGraceMs?: number;
  /** Minimum time between progress callbacks (default 500 ms). */
  progressIntervalMs?: number;
  /** Requests per call before giving up on transport errors (default 3). */
  attempts?: number;
  /** Pause between attempts (default 1 s). */
  retryDelayMs?: number;
  statfs?: StatFs;
  /** Extra CA certificates for HTTPS. */
  ca?: string | Buffer;
}

/** Fetches update files resumably. */
export interface Downloader {
  download(request: DownloadRequest): Promise<DownloadResult>;
}

const maxRedirects = 5;
/** Defaults of the rate floor (`update.minDownloadBytesPerSec`, `update.slowDownloadGraceSec`). */
export const defaultMinRateBytesPerSec = 1024;
export const defaultRateGraceMs = 30_000;

const fail = (message: string, transient = true, cause?: unknown): OutpostError =>
  new OutpostError('DOWNLOAD_FAILED', message, { transient, ...(cause === undefined ? {} : { cause }) });
const bad = (message: string): OutpostError => new OutpostError('DOWNLOAD_VERIFY', message);

async function sizeOf(path: string): Promise<number | null> {
  return stat(path).then((s) => s.size, () => null);
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

const defaultStatfs: StatFs = async (path) => {
  const s = await statfs(path);
  return { bavail: s.bavail, bsize: s.bsize };
};

/** Bytes an unprivileged writer may still use on the file system holding `path`. */
export async function freeBytes(path: string, statfsFn: StatFs = defaultStatfs): Promise<number> {
  const s = await statfsFn(path);
  return s.bavail * s.bsize;
}

/** Creates a downloader; one bandwidth bucket is shared by all its downloads. */
export function createDownloader(options: DownloaderOptions): Downloader {
  const log = options.log;
  const idleMs = options.idleTimeoutMs ?? 30_000;
  const minRate = options.minRateBytesPerSec ?? defaultMinRateBytesPerSec;
  const graceMs = options.rateGraceMs ?? defaultRateGraceMs;
  const progressMs = options.progressIntervalMs ?? 500;
  const attempts = Math.max(1, options.attempts ?? 3);
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  const statfsFn = options.statfs ?? defaultStatfs;
  const bucket: TokenBucket = createTokenBucket(options.bandwidthBytesPerSec);

  /** GET with redirects; resolves to the response once headers arrive. */
  const get = async (url: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<IncomingMessage> => {
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const opts: RequestOptions = { method: 'GET', headers, ...(signal === undefined ? {} : { signal }) };
        // Past the headers the body has its own idle timer, which pauses while the bandwidth cap
        // holds reading back; the socket timeout would count that pause as idleness.
        const onResponse = (res: IncomingMessage): void => {
          req?.setTimeout(0);
          resolve(res);
        };
        const req =
          current.protocol === 'https:'
            ? httpsRequest(current, { ...opts, ...(options.ca === undefined ? {} : { ca: options.ca }) }, onResponse)
            : current.protocol === 'http:'
              ? httpRequest(current, opts, onResponse)
              : null;
        if (req === null) return reject(fail(`unsupported URL scheme in ${current.href}`, false));
        req.setTimeout(idleMs, () => req.destroy(fail(`no response from ${current.host} within ${idleMs} ms`)));
        req.once('error', reject);
        req.end();
      });
      const location = res.headers.location;
      if (res.statusCode !== undefined && res.statusCode >= 300 && res.statusCode < 400 && location !== undefined) {
        res.resume();
        if (hop >= maxRedirects) throw fail(`too many redirects fetching ${url}`, false);
        current = new URL(location, current);
        continue;
      }
      return res;
    }
  };

  return {
    async download(req) {
      if (!/^[0-9a-f]{64}$/.test(req.sha256)) throw bad(`expected sha256 for ${req.name} is not 64 lower-case hex digits`);
      if (!Number.isSafeInteger(req.expectedLength) || req.expectedLength < 0) throw bad(`bad expected length ${req.expectedLength}`);
      if (req.name === '' || req.name.includes('/') || req.name === '.' || req.name === '..') throw bad(`bad file name ${req.name}`);
      const expected = req.expectedLength;
      const finalPath = join(req.dir, req.name);
      const partPath = `${finalPath}.part`;
      await mkdir(req.dir, { recursive: true });

      // A verified final file from an earlier call (e.g. killed after the rename) is reused.
      if ((await sizeOf(finalPath)) === expected) {
        const h = createHash('sha256');
        await hashFile(finalPath, h);
        if (h.digest('hex') === req.sha256) return { path: finalPath, bytes: expected, resumedFrom: expected, transferred: 0, requests: 0, cached: true };
      }
      await unlink(finalPath).catch(() => undefined);

      let have = (await sizeOf(partPath)) ?? 0;
      if (have > expected) {
        await unlink(partPath);
        have = 0;
      }
      const resumedFrom = have;
      const needed = expected - have + (req.applyHeadroomBytes ?? 0);
      const available = await freeBytes(req.dir, statfsFn);
      if (available < needed) {
        throw new OutpostError('DISK_SPACE', `not enough space in ${req.dir} for ${req.name}: need ${needed} bytes (download ${expected - have} + apply headroom ${req.applyHeadroomBytes ?? 0}), ${available} available`);
      }

      let hash = createHash('sha256');
      if (have > 0) await hashFile(partPath, hash);
      let transferred = 0;
      let requests = 0;
      const started = performance.now();
      let lastEmit = started;
      let lastBytes = have;
      const progress = (): void => {
        const now = performance.now();
        if (req.onProgress === undefined || now - lastEmit < progressMs) return;
        req.onProgress({ bytes: have, total: expected, rateBps: Math.max(0, Math.round(((have - lastBytes) * 1000) / (now - lastEmit))) });
        lastEmit = now;
        lastBytes = have;
      };
      const restart = async (why: string): Promise<void> => {
        log.warn('restarting download from 0', { url: req.url, reason: why });
        await unlink(partPath).catch(() => undefined);
        have = 0;
        lastBytes = 0;
        hash = createHash('sha256');
      };

      /** One request: appends what the server sends to the part; resolves when the response ends. */
      const fetchOnce = async (): Promise<void> => {
        const from = have;
        const requestStart = performance.now();
        let received = 0;
        let heldMs = 0;
        const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'outpost' };
        if (from > 0) headers['range'] = `bytes=${from}-`;
        requests++;
        const res = await get(req.url, headers, req.signal);
        const status = res.statusCode ?? 0;
        const declared = res.headers['content-length'] === undefined ? null : Number(res.headers['content-length']);
        if (status === 416) {
          res.resume();
          await restart('416 Range Not Satisfiable');
          throw fail(`server refused range bytes=${from}- for ${req.url}`);
        }
        if (status === 206) {
          const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
          if (m?.[3] !== undefined && m[3] !== '*' && Number(m[3]) !== expected) {
            res.resume();
            throw bad(`${req.url} is ${m[3]} bytes on the server, the signed length is ${expected}`);
          }
          if (m === null || Number(m[1]) !== from) {
            res.resume();
            await restart(`unexpected Content-Range ${JSON.stringify(res.headers['content-range'])}`);
            throw fail(`server answered a different range than bytes=${from}-`);
          }
        } else if (status === 200) {
          if (from > 0) await restart('server ignored Range (200)');
        } else {
          res.resume();
          // 4xx other than timeout/too-many-requests will not change by retrying; 5xx may.
          const transient = status >= 500 || status === 408 || status === 429;
          throw fail(`GET ${req.url} answered HTTP ${status}`, transient);
        }
        // A declared length that does not end exactly at the signed length means another file.
        if (declared !== null && have + declared !== expected) {
          res.destroy();
          throw bad(`${req.url} announces ${have + declared} bytes, the signed length is ${expected}`);
        }
        const fh: FileHandle = await open(partPath, have === 0 ? 'w' : 'a');
        let idle: NodeJS.Timeout | undefined;
        const arm = (): void => {
          clearTimeout(idle);
          idle = setTimeout(() => res.destroy(fail(`no data from ${req.url} for ${idleMs} ms`)), idleMs);
        };
        let heldSince: number | undefined;
        const floor =
          minRate > 0
            ? setInterval(() => {
                const now = performance.now();
                const activeMs = now - requestStart - heldMs - (heldSince === undefined ? 0 : now - heldSince);
                if (activeMs < graceMs || (received * 1000) / activeMs >= minRate) return;
                const observed = Math.floor((received * 1000) / activeMs);
                res.destroy(fail(`${req.url} came at ${observed} B/s on average over ${(activeMs / 1000).toFixed(1)} s, below the minimum of ${minRate} B/s (update.minDownloadBytesPerSec); the part is kept for resume`));
              }, Math.min(1000, graceMs))
            : undefined;
        try {
          arm();
          for await (const chunk of res) {
            clearTimeout(idle);
            const buf = chunk as Buffer;
            if (have + buf.length > expected) {
              res.destroy();
              throw bad(`${req.url} sent more than the signed length of ${expected} bytes`);
            }
            received += buf.length;
            for (let offset = 0; offset < buf.length; offset += bucket.sliceBytes) {
              // A cancel stops within one slice, not after the whole chunk's wait.
              req.signal?.throwIfAborted();
              const slice = buf.subarray(offset, offset + bucket.sliceBytes);
              heldSince = performance.now();
              await bucket.take(slice.length);
              heldMs += performance.now() - heldSince;
              heldSince = undefined;
              await fh.write(slice);
              hash.update(slice);
              have += slice.length;
              transferred += slice.length;
              progress();
            }
            arm();
          }
          await fh.sync(); // the part is durable so a reboot resumes from here
        } catch (err) {
          await fh.sync().catch(() => undefined);
          if (req.signal?.aborted === true) throw fail(`download of ${req.url} cancelled`, true, err);
          if (err instanceof OutpostError) throw err;
          throw fail(`connection lost fetching ${req.url} at ${have}/${expected} bytes: ${err instanceof Error ? err.message : String(err)}`, true, err);
        } finally {
          clearTimeout(idle);
          clearInterval(floor);
          await fh.close();
        }
        if (have < expected) throw fail(`${req.url} ended early at ${have}/${expected} bytes`);
      };

      // A part that is already whole (killed before the rename) needs no request: verify below.
      for (let attempt = 1; have < expected; attempt++) {
        try {
          await fetchOnce();
        } catch (err) {
          if (err instanceof OutpostError && err.code === 'DOWNLOAD_VERIFY') {
            await unlink(partPath).catch(() => undefined);
            throw err;
          }
          const transient = !(err instanceof OutpostError) || err.transient;
          if (!transient || attempt >= attempts || req.signal?.aborted === true) {
            log.warn('download failed; part kept for resume', { url: req.url, have, expected, attempt });
            throw err instanceof OutpostError ? err : fail(`fetching ${req.url}: ${String(err)}`, true, err);
          }
          log.info('download interrupted, retrying', { url: req.url, have, expected, attempt, err });
          await sleep(retryDelayMs, undefined, req.signal === undefined ? {} : { signal: req.signal }).catch(() => undefined);
        }
      }

      const digest = hash.digest('hex');
      if (have !== expected || digest !== req.sha256) {
        await unlink(partPath).catch(() => undefined);
        throw bad(`${req.name}: got ${have} bytes with sha256 ${digest}, expected ${expected} bytes with sha256 ${req.sha256}`);
      }
      const fh = await open(partPath, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(partPath, finalPath);
      await syncDir(req.dir);
      log.info('download verified', { url: req.url, bytes: expected, resumedFrom, transferred, requests, ms: Math.round(performance.now() - started) });
      return { path: finalPath, bytes: expected, resumedFrom, transferred, requests, cached: false };
    },
  };
}
