import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOutpostError, OutpostError, type ErrorCode } from '../../../runtime/errors.js';
import { httpFetcher } from '../../../runtime/update/fetchers.js';

/** A metadata server on loopback; `handler` plays the misbehaving CDN. */
async function serve(t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; requests: string[] }> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    handler(req, res);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, requests };
}

/** Settles `promise` or says it is still pending after `ms`, so a hang fails the test instead of the run. */
async function within<T>(promise: Promise<T>, ms: number): Promise<{ value: T } | { error: unknown } | 'pending'> {
  const stop = new AbortController();
  const pending = sleep(ms, 'pending' as const, { signal: stop.signal }).catch(() => 'pending' as const);
  try {
    return await Promise.race([promise.then((value) => ({ value }), (error: unknown) => ({ error })), pending]);
  } finally {
    stop.abort();
  }
}

function rejected(t: Test, outcome: Awaited<ReturnType<typeof within>>, code: ErrorCode, pattern: RegExp): void {
  if (outcome === 'pending' || !('error' in outcome)) {
    t.fail(`expected ${code}, got ${outcome === 'pending' ? 'still pending' : 'a result'}`);
    return;
  }
  t.ok(isOutpostError(outcome.error, code), `${code} (got ${String(outcome.error)})`);
  t.ok(isOutpostError(outcome.error) && outcome.error.transient, 'transient');
  if (outcome.error instanceof Error) t.match(outcome.error.message, pattern);
}

t.test('a file, a missing file (undefined), and an oversize body cut after the limit', async (t) => {
  const s = await serve(t, (req, res) => {
    if (req.url === '/timestamp.json') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"a":1}');
    if (req.url === '/big.json') return void res.writeHead(200).end(Buffer.alloc(100_000, 0x20));
    res.writeHead(404).end();
  });
  const f = httpFetcher(s.url);
  t.same(Buffer.from((await f.fetch('timestamp.json', 1000)) ?? []).toString(), '{"a":1}');
  t.equal(await f.fetch('2.root.json', 1000), undefined);
  const big = await f.fetch('big.json', 1000);
  t.ok(big !== undefined && big.length > 1000 && big.length < 100_000, 'stops reading past the limit; the client reports the oversize');
});

t.test('slow retrieval: a server dripping one byte every 100 ms is cut off at the deadline', async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const drip = setInterval(() => res.write(' '), 100);
    res.on('close', () => clearInterval(drip));
  });
  // The drip stays far inside the idle timeout: only a deadline on the whole fetch ends it.
  const f = httpFetcher(s.url, { deadlineMs: 1000, idleTimeoutMs: 30_000 });
  rejected(t, await within(f.fetch('timestamp.json', 16384), 5000), 'UPDATE_UNAVAILABLE', new RegExp(`${s.url}timestamp\\.json exceeded the 1000 ms deadline`));
});

t.test('a body cut short is a transient UPDATE_UNAVAILABLE, never partial bytes to parse', async (t) => {
  const s = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': 100 });
    res.write(Buffer.alloc(50, 0x20), () => res.destroy());
  });
  const f = httpFetcher(s.url);
  rejected(t, await within(f.fetch('snapshot.json', 1000), 5000), 'UPDATE_UNAVAILABLE', /closed before the end of http:\/\/127\.0\.0\.1:\d+\/snapshot\.json \(Content-Length 100\)/);
});

t.test("the caller's signal cancels a fetch and its reason is reported with the URL", async (t) => {
  const s = await serve(t, () => undefined); // never answers
  const controller = new AbortController();
  const f = httpFetcher(s.url, { signal: controller.signal });
  setTimeout(() => controller.abort(new OutpostError('UPDATE_UNAVAILABLE', 'the check exceeded its 2000 ms deadline', { transient: true })), 200);
  rejected(t, await within(f.fetch('timestamp.json', 1000), 5000), 'UPDATE_UNAVAILABLE', /the check exceeded its 2000 ms deadline \(while fetching http:\/\/127\.0\.0\.1:\d+\/timestamp\.json\)/);
  rejected(t, await within(f.fetch('snapshot.json', 1000), 5000), 'UPDATE_UNAVAILABLE', /while fetching .*snapshot\.json/);
  t.equal(s.requests.length, 1, 'an aborted signal sends nothing more');
});
