import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOutpostError, type ErrorCode } from '../../../runtime/errors.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { createDownloader, type DownloaderOptions, type DownloadProgress, type DownloadRequest } from '../../../runtime/update/download.js';
import { startFileServer, type FileServer } from '../../../scripts/world/file-server.js';
import { createPki } from '../../../scripts/world/pki.js';
import { pseudoRandomBytes } from '../../../scripts/world/ostree-world.js';

const size = 300 * 1024;
const content = pseudoRandomBytes(size, 42);
const sha256 = createHash('sha256').update(content).digest('hex');

interface Fixture {
  server: FileServer;
  dir: string;
  request(overrides?: Partial<DownloadRequest>): DownloadRequest;
  part: string;
  final: string;
}

async function fixture(t: Test): Promise<Fixture> {
  const root = await mkdtemp(join(tmpdir(), 'outpost-dl-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await writeFile(join(root, 'update.delta'), content);
  const server = await startFileServer({ root });
  t.teardown(() => server.close());
  const dir = join(root, 'cache');
  return {
    server,
    dir,
    part: join(dir, 'update.delta.part'),
    final: join(dir, 'update.delta'),
    request: (overrides = {}) => ({ url: `${server.url}/update.delta`, dir, name: 'update.delta', expectedLength: size, sha256, ...overrides }),
  };
}

const downloader = (options: Partial<DownloaderOptions> = {}) => createDownloader({ log: silentLogger, retryDelayMs: 10, ...options });

async function rejection(t: Test, promise: Promise<unknown>, code: ErrorCode, pattern: RegExp): Promise<unknown> {
  const err = await promise.then(() => null, (e: unknown) => e);
  t.ok(isOutpostError(err, code), `${code} (got ${String(err)})`);
  if (err instanceof Error) t.match(err.message, pattern);
  return err;
}

const sizeOf = async (path: string): Promise<number> => (await stat(path)).size;

t.test('a full download is verified, fsynced and renamed; a verified final file is reused', async (t) => {
  const f = await fixture(t);
  const result = await downloader().download(f.request());
  t.match(result, { path: f.final, bytes: size, resumedFrom: 0, transferred: size, requests: 1, cached: false });
  t.same(await readFile(f.final), content);
  t.notOk(existsSync(f.part), 'no part left behind');
  t.equal(f.server.requests[0]?.range, undefined, 'fresh start sends no Range');

  const again = await downloader().download(f.request());
  t.match(again, { cached: true, requests: 0, transferred: 0 });
  t.equal(f.server.requests.length, 1, 'nothing fetched for a cached file');
});

t.test('an interrupted download resumes from the part within the same call', async (t) => {
  const f = await fixture(t);
  f.server.setFault({ dropAfterBytes: 100_000, times: 1 });
  const result = await downloader({ attempts: 3 }).download(f.request());
  const [first, second] = f.server.requests;
  t.equal(result.requests, 2);
  t.equal(first?.bytesSent, 100_000);
  // Bytes still buffered in the response stream when the close arrives are discarded by node, so
  // the part holds at most what was sent; the resume asks exactly for what the part lacks.
  const kept = Number(/^bytes=(\d+)-$/.exec(second?.range ?? '')?.[1] ?? -1);
  t.ok(kept > 0 && kept <= 100_000, `the retry asked for the rest (from ${kept})`);
  t.equal(second?.status, 206);
  t.equal(second?.bytesSent, size - kept, 'only the remainder crossed the wire');
  t.equal(result.transferred, size, 'each byte fetched once');
  t.same(await readFile(f.final), content);
});

t.test('a "daemon restart" (new downloader) resumes the part a killed one left', async (t) => {
  const f = await fixture(t);
  f.server.setFault({ dropAfterBytes: 120_000, times: 1 });
  await rejection(t, downloader({ attempts: 1 }).download(f.request()), 'DOWNLOAD_FAILED', /connection lost|ended early/);
  const kept = await sizeOf(f.part);
  t.ok(kept > 0 && kept <= 120_000, `part of ${kept} bytes kept`);
  t.notOk(existsSync(f.final));

  const result = await downloader().download(f.request());
  t.match(result, { resumedFrom: kept, transferred: size - kept, requests: 1 });
  t.match(f.server.requests[1], { range: `bytes=${kept}-`, status: 206, bytesSent: size - kept });
  t.same(await readFile(f.final), content);
});

t.test('a part that is already whole (killed before the rename) is verified without a request', async (t) => {
  const f = await fixture(t);
  await downloader().download(f.request({ name: 'x' })); // creates the cache dir
  await writeFile(f.part, content);
  const result = await downloader().download(f.request());
  t.match(result, { resumedFrom: size, transferred: 0, requests: 0, cached: false });
  t.equal(f.server.requests.length, 1, 'only the first download hit the server');
});

t.test('wrong sha256 -> DOWNLOAD_VERIFY, no final file, part deleted', async (t) => {
  const f = await fixture(t);
  await rejection(t, downloader().download(f.request({ sha256: 'ab'.repeat(32) })), 'DOWNLOAD_VERIFY', /sha256 .* expected .* sha256 abab/);
  t.notOk(existsSync(f.final));
  t.notOk(existsSync(f.part));
});

t.test('a server that keeps closing early: error after the attempts, part kept for later', async (t) => {
  const f = await fixture(t);
  f.server.setFault({ dropAfterBytes: 50_000 });
  const err = await rejection(t, downloader({ attempts: 2 }).download(f.request()), 'DOWNLOAD_FAILED', /at \d+\/307200 bytes/);
  t.ok(isOutpostError(err) && err.transient, 'transient: retry later');
  t.equal(f.server.requests.length, 2);
  t.equal(f.server.requests[1]?.status, 206, 'the second attempt resumed');
  const kept = await sizeOf(f.part);
  t.ok(kept > 0, `what arrived is kept for resume (${kept} bytes)`);
  f.server.setFault(null);
  t.match(await downloader().download(f.request()), { resumedFrom: kept, transferred: size - kept });
});

t.test('more bytes than the signed length are refused', async (t) => {
  const f = await fixture(t);
  f.server.setFault({ extraBytes: 1000 });
  await rejection(t, downloader().download(f.request()), 'DOWNLOAD_VERIFY', /announces 308200 bytes, the signed length is 307200/);
  t.notOk(existsSync(f.part));
  f.server.setFault({ extraBytes: 70_000, noContentLength: true });
  await rejection(t, downloader().download(f.request()), 'DOWNLOAD_VERIFY', /sent more than the signed length/);
  t.notOk(existsSync(f.part), 'part deleted');
  t.notOk(existsSync(f.final));
  f.server.setFault(null);
  await rejection(t, downloader().download(f.request({ expectedLength: size + 10 })), 'DOWNLOAD_VERIFY', /announces 307200 bytes, the signed length is 307210/);
  t.notOk(existsSync(f.part), 'a shorter file is refused on its headers, nothing written');
});

t.test('not enough disk -> DISK_SPACE before any byte is fetched', async (t) => {
  const f = await fixture(t);
  const headroom = 1_000_000;
  const needed = size + headroom;
  const statfs = (bytes: number) => async () => ({ bavail: bytes / 512, bsize: 512 });
  const err = await rejection(
    t,
    downloader({ statfs: statfs(needed - 512) }).download(f.request({ applyHeadroomBytes: headroom })),
    'DISK_SPACE',
    new RegExp(`space in ${f.dir} .*need ${needed} bytes .*${needed - 512} available`),
  );
  t.notOk(isOutpostError(err) && err.transient, 'not transient: space has to change first');
  t.equal(f.server.requests.length, 0, 'no request was made');

  // With part of the file already here, only the rest has to fit.
  f.server.setFault({ dropAfterBytes: 200_000, times: 1 });
  await downloader({ attempts: 1 }).download(f.request()).catch(() => undefined);
  const kept = await sizeOf(f.part);
  const exact = async () => ({ bavail: size - kept + headroom, bsize: 1 });
  const rest = await downloader({ statfs: exact }).download(f.request({ applyHeadroomBytes: headroom }));
  t.equal(rest.resumedFrom, kept, 'exactly the rest plus headroom was enough');
});

t.test('a server ignoring Range restarts from 0; 416 discards the part', async (t) => {
  const f = await fixture(t);
  f.server.setFault({ dropAfterBytes: 64_000, times: 1 });
  await downloader({ attempts: 1 }).download(f.request()).catch(() => undefined);
  const kept = await sizeOf(f.part);
  f.server.setFault({ ignoreRange: true, times: 1 });
  const restarted = await downloader().download(f.request());
  t.match(f.server.requests[1], { range: `bytes=${kept}-`, status: 200, bytesSent: size });
  t.match(restarted, { resumedFrom: kept, transferred: size });
  t.same(await readFile(f.final), content);

  await rm(f.final);
  f.server.setFault({ dropAfterBytes: 64_000, times: 1 });
  await downloader({ attempts: 1 }).download(f.request()).catch(() => undefined);
  const kept416 = await sizeOf(f.part);
  f.server.setFault({ status: 416, times: 1 });
  await downloader().download(f.request());
  const last = f.server.requests.slice(-2);
  t.match(last, [{ range: `bytes=${kept416}-`, status: 416 }, { range: undefined, status: 200, bytesSent: size }]);
});

t.test('HTTP 404 fails at once and is not transient; an idle server times out', async (t) => {
  const f = await fixture(t);
  const err = await rejection(t, downloader().download(f.request({ url: `${f.server.url}/missing` })), 'DOWNLOAD_FAILED', /HTTP 404/);
  t.notOk(isOutpostError(err) && err.transient);
  t.equal(f.server.requests.length, 1, 'no retries for a 404');

  f.server.setFault({ throttleBytesPerSec: 8 * 1024 }); // 16 KiB chunks, 2 s apart
  const started = Date.now();
  await rejection(t, downloader({ attempts: 1, idleTimeoutMs: 400 }).download(f.request()), 'DOWNLOAD_FAILED', /no data .* for 400 ms/);
  t.ok(Date.now() - started < 1500, 'gave up after the idle time');
  t.ok(existsSync(f.part), 'part kept');
});

t.test('slow retrieval: a server trickling a byte every 50 ms is cut off below the minimum average rate; the part is kept', async (t) => {
  const f = await fixture(t);
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': size });
    let sent = 0;
    const drip = setInterval(() => res.write(content.subarray(sent, ++sent)), 50);
    res.on('close', () => clearInterval(drip));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/update.delta`;
  // Each byte arrives well inside the idle timeout, so only the rate floor ends this.
  const slow = downloader({ attempts: 1, idleTimeoutMs: 30_000, minRateBytesPerSec: 1000, rateGraceMs: 500 }).download(f.request({ url }));
  const stop = new AbortController();
  const outcome = await Promise.race([slow.then(() => 'finished', (e: unknown) => e), sleep(5000, 'still running', { signal: stop.signal })]);
  stop.abort();
  t.ok(isOutpostError(outcome, 'DOWNLOAD_FAILED'), `DOWNLOAD_FAILED (got ${String(outcome)})`);
  t.ok(isOutpostError(outcome) && outcome.transient, 'transient: resumed later');
  if (outcome instanceof Error) t.match(outcome.message, new RegExp(`${url} came at \\d+ B/s on average over [\\d.]+ s, below the minimum of 1000 B/s`));
  t.ok(existsSync(f.part), 'part kept for resume');
});

t.test('time the bandwidth cap holds reading back does not count against the minimum rate', async (t) => {
  const f = await fixture(t);
  // The server could send far faster than the floor; only our own cap slows it below.
  const result = await downloader({ bandwidthBytesPerSec: 200 * 1024, minRateBytesPerSec: 300 * 1024, rateGraceMs: 300 }).download(f.request());
  t.equal(result.bytes, size);
});

t.test('cancelling keeps the part', async (t) => {
  const f = await fixture(t);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 300);
  await rejection(t, downloader({ bandwidthBytesPerSec: 200 * 1024 }).download(f.request({ signal: controller.signal })), 'DOWNLOAD_FAILED', /cancelled/);
  const kept = await sizeOf(f.part);
  t.ok(kept > 0 && kept < size, `part of ${kept} bytes kept`);
});

t.test('a slow cap (1 KiB/s): progress and a cancel come within a slice, not after the socket\'s whole chunk', async (t) => {
  const f = await fixture(t);
  const controller = new AbortController();
  const progress: DownloadProgress[] = [];
  const t0 = performance.now();
  setTimeout(() => controller.abort(), 2000);
  // The socket hands over 16-64 KiB at a time: 16-64 s of credit at this cap, taken at once before.
  await rejection(t, downloader({ bandwidthBytesPerSec: 1024 }).download(f.request({ signal: controller.signal, onProgress: (p) => progress.push(p) })), 'DOWNLOAD_FAILED', /cancelled/);
  const seconds = (performance.now() - t0) / 1000;
  t.ok(seconds < 8, `the cancel after 2 s ended the download after ${seconds.toFixed(1)} s`);
  t.ok(progress.some((p) => p.bytes > 0 && p.bytes < 4096), `progress while it trickles: ${progress.map((p) => p.bytes).join(', ')} bytes`);
  const kept = await sizeOf(f.part);
  t.ok(kept > 0 && kept < 4096, `the part holds what passed the cap: ${kept} bytes`);
});

t.test('the bandwidth cap limits the rate; progress comes at most every 500 ms', async (t) => {
  const f = await fixture(t);
  const head = content.subarray(0, 200 * 1024);
  await writeFile(join(f.dir, '..', 'head.bin'), head); // next to update.delta in the served root
  const progress: (DownloadProgress & { at: number })[] = [];
  const cap = 100 * 1024;
  const t0 = performance.now();
  const result = await downloader({ bandwidthBytesPerSec: cap }).download(
    f.request({
      url: `${f.server.url}/head.bin`,
      name: 'head.bin',
      expectedLength: head.length,
      sha256: createHash('sha256').update(head).digest('hex'),
      onProgress: (p) => progress.push({ ...p, at: performance.now() }),
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  t.ok(seconds >= 1.5, `200 KiB at 100 KiB/s took ${seconds.toFixed(2)} s`);
  t.ok(seconds < 5, 'but not absurdly long');
  t.equal(result.bytes, head.length);
  t.ok(progress.length >= 2, `${progress.length} progress reports`);
  for (let i = 1; i < progress.length; i++) t.ok((progress[i]?.at ?? 0) - (progress[i - 1]?.at ?? 0) >= 490, 'spaced by >= 500 ms');
  t.ok(progress.every((p) => p.total === head.length && p.rateBps < cap * 1.6), 'rate near the cap');
});

t.test('HTTPS with the fleet CA; an untrusted server certificate fails', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'outpost-dl-tls-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const pki = await createPki({ dir: join(root, 'pki'), deviceId: 'gw-1' });
  await writeFile(join(root, 'update.delta'), content);
  const server = await startFileServer({ root, tls: pki.server });
  t.teardown(() => server.close());
  const request = { url: `${server.url}/update.delta`, dir: join(root, 'cache'), name: 'update.delta', expectedLength: size, sha256 };
  t.match(server.url, /^https:/);
  const result = await downloader({ ca: await readFile(pki.ca.cert) }).download(request);
  t.equal(result.bytes, size);
  await rm(result.path);
  await rejection(t, downloader({ ca: await readFile(pki.wrongCa.cert), attempts: 1 }).download(request), 'DOWNLOAD_FAILED', /certificate/);
});
