import t, { type Test } from 'tap';
import { fork } from 'node:child_process';
import { once } from 'node:events';
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
  const f = httpFetcher(s.url, { retryDelayMs: 10 });
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

/** The idle-closing server in its own process; `stats()` asks it what it saw. */
async function idleClosingServer(t: Test, idleMs: number): Promise<{ url: string; stats: () => Promise<{ connections: number; requests: number }> }> {
  const child = fork(new URL('../../fixtures/idle-closing-server.ts', import.meta.url), [String(idleMs)], { execArgv: ['--import=tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  t.teardown(() => void child.kill());
  const [ready] = (await once(child, 'message')) as [{ port: number }];
  return {
    url: `http://127.0.0.1:${ready.port}/`,
    stats: async () => {
      child.send('stats');
      return ((await once(child, 'message')) as [{ connections: number; requests: number }])[0];
    },
  };
}

/** Keeps the event loop busy, as verifying signatures does on a slow gateway. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

t.test('socket hang up: a keep-alive connection the server closed while the device was busy is retried on a fresh one', async (t) => {
  const server = await idleClosingServer(t, 100);
  const f = httpFetcher(server.url, { retryDelayMs: 10 });
  t.ok(await f.fetch('snapshot.json', 1000));
  // The server closes the idle connection meanwhile; the device sees the close only after it has
  // written its next GET onto that connection, which then fails before any response.
  busy(400);
  const outcome = await within(f.fetch('targets.json', 1000), 5000);
  t.ok(outcome !== 'pending' && 'value' in outcome, `fetched (got ${outcome === 'pending' ? 'still pending' : 'error' in outcome ? String(outcome.error) : 'bytes'})`);
  if (outcome !== 'pending' && 'value' in outcome) t.same(JSON.parse(Buffer.from(outcome.value ?? []).toString()), { path: '/targets.json' });
  t.match(await server.stats(), { connections: 2, requests: 2 }, 'the retry went over a new connection');
});

t.test('transient answers are retried within the fetch on a short backoff; other 4xx are not', async (t) => {
  let flaky = 2;
  const s = await serve(t, (req, res) => {
    if (req.url === '/timestamp.json' && flaky-- > 0) return void res.writeHead(503).end();
    if (req.url === '/timestamp.json') return void res.writeHead(200).end('{}');
    if (req.url === '/forbidden.json') return void res.writeHead(403).end();
    res.writeHead(502).end();
  });
  const f = httpFetcher(s.url, { retryDelayMs: 10 });
  t.same(Buffer.from((await f.fetch('timestamp.json', 1000)) ?? []).toString(), '{}', 'two 503s, then the file');
  t.equal(s.requests.filter((r) => r === '/timestamp.json').length, 3);

  rejected(t, await within(f.fetch('forbidden.json', 1000), 5000), 'UPDATE_UNAVAILABLE', /HTTP 403/);
  t.equal(s.requests.filter((r) => r === '/forbidden.json').length, 1, 'a 403 is not retried within the fetch');

  rejected(t, await within(f.fetch('down.json', 1000), 5000), 'UPDATE_UNAVAILABLE', /answered http:\/\/127\.0\.0\.1:\d+\/down\.json with HTTP 502/);
  t.equal(s.requests.filter((r) => r === '/down.json').length, 3, 'three requests, then the last error');

  const bounded = httpFetcher(s.url, { retryDelayMs: 100, attempts: 100, deadlineMs: 500 });
  rejected(t, await within(bounded.fetch('down.json', 1000), 5000), 'UPDATE_UNAVAILABLE', /exceeded the 500 ms deadline/);
});
