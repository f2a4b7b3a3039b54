/**
 * A static file server on 127.0.0.1 (random port) for tests and the demo: it serves the OSTree
 * archive repo (the pull fallback) and delta files (the downloader), honours single byte ranges
 * like a CDN does (206, Content-Range, 416), and can be told to misbehave so resume paths are
 * exercised: drop the connection after N bytes, throttle, ignore Range, send extra bytes, or
 * stream without Content-Length.
 *
 * Invariants: paths are confined to `root` (no `..` escape); every request is logged with the
 * bytes actually written, so tests can assert what crossed the wire; `close()` destroys open
 * sockets so a test never waits on a half-finished download.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { Socket } from 'node:net';
import { normalize, join, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Ways to misbehave; each applies to requests whose path starts with `pathPrefix` (default all). */
export interface Fault {
  pathPrefix?: string;
  /** Destroy the socket after this many body bytes of a response. */
  dropAfterBytes?: number;
  /** Limit the body rate. */
  throttleBytesPerSec?: number;
  /** Answer 200 with the whole file even when a Range was asked for. */
  ignoreRange?: boolean;
  /** Append this many junk bytes to the body (Content-Length adjusted unless `noContentLength`). */
  extraBytes?: number;
  /** Omit Content-Length (chunked transfer encoding), as some proxies do. */
  noContentLength?: boolean;
  /** Answer with this status and no body. */
  status?: number;
  /** Wait this long before answering (a server that stalls before its headers). */
  delayMs?: number;
  /** How many requests the fault applies to before it clears itself (default: until cleared). */
  times?: number;
}

/** One served request, as the client saw it. */
export interface ServedRequest {
  method: string;
  path: string;
  range: string | undefined;
  status: number;
  /** Body bytes written to the socket (before any drop). */
  bytesSent: number;
}

/** A running file server. */
export interface FileServer {
  readonly port: number;
  /** `http(s)://127.0.0.1:<port>` (no trailing slash). */
  readonly url: string;
  readonly requests: ServedRequest[];
  /** Replaces the active fault (null clears it). */
  setFault(fault: Fault | null): void;
  close(): Promise<void>;
}

const chunkBytes = 16 * 1024;

function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // multi-range or garbage: serve it all, as RFC 9110 allows
  if (m[1] === '') {
    const suffix = Number(m[2]);
    return suffix === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start >= size || end < start ? 'unsatisfiable' : { start, end };
}

/** Starts serving `root` (over HTTPS when `tls` names a certificate and key file); resolves once listening. */
export async function startFileServer(options: { root: string; tls?: { cert: string; key: string } }): Promise<FileServer> {
  const root = normalize(options.root);
  const requests: ServedRequest[] = [];
  const sockets = new Set<Socket>();
  let fault: Fault | null = null;

  const activeFault = (path: string): Fault | null => {
    if (fault === null || !path.startsWith(fault.pathPrefix ?? '/')) return null;
    const f = fault;
    if (f.times !== undefined && --f.times <= 0) fault = null;
    return f;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const entry: ServedRequest = { method: req.method ?? 'GET', path, range: req.headers.range, status: 0, bytesSent: 0 };
    requests.push(entry);
    const reply = (status: number, headers: Record<string, string | number> = {}): void => {
      entry.status = status;
      res.writeHead(status, headers).end();
    };
    const file = normalize(join(root, path));
    if (file !== root && !file.startsWith(root + sep)) return reply(403);
    const f = activeFault(path);
    if (f?.delayMs !== undefined) await sleep(f.delayMs);
    if (f?.status !== undefined) return reply(f.status);
    const info = await stat(file).catch(() => null);
    if (info === null || !info.isFile()) return reply(404);
    const size = info.size;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const headers: Record<string, string | number> = { 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    if (req.headers.range !== undefined && f?.ignoreRange !== true) {
      const range = parseRange(req.headers.range, size);
      if (range === 'unsatisfiable') return reply(416, { 'Content-Range': `bytes */${size}` });
      if (range !== null) {
        ({ start, end } = range);
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
      }
    }
    const extra = f?.extraBytes ?? 0;
    if (f?.noContentLength !== true) headers['Content-Length'] = Math.max(0, end - start + 1) + extra;
    entry.status = status;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return void res.end();

    const write = async (chunk: Buffer): Promise<boolean> => {
      let data = chunk;
      if (f?.dropAfterBytes !== undefined && entry.bytesSent + data.length >= f.dropAfterBytes) {
        data = data.subarray(0, Math.max(0, f.dropAfterBytes - entry.bytesSent));
        if (data.length > 0) await new Promise<void>((resolve) => res.write(data, () => resolve()));
        entry.bytesSent += data.length;
        // FIN after the queued bytes, so exactly `dropAfterBytes` arrive before the premature close
        // (destroy() could discard data still queued in user space).
        res.socket?.end();
        return false;
      }
      if (!res.write(data)) await new Promise<void>((resolve) => res.once('drain', () => resolve()));
      entry.bytesSent += data.length;
      if (f?.throttleBytesPerSec !== undefined) await sleep((data.length / f.throttleBytesPerSec) * 1000);
      return !res.destroyed;
    };
    if (end >= start) {
      for await (const chunk of createReadStream(file, { start, end, highWaterMark: chunkBytes })) {
        if (!(await write(chunk as Buffer))) return;
      }
    }
    if (extra > 0 && !(await write(Buffer.alloc(extra, 0x5a)))) return;
    res.end();
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch(() => res.destroy());
  };
  const server =
    options.tls === undefined
      ? createServer(listener)
      : createTlsServer({ cert: await readFile(options.tls.cert), key: await readFile(options.tls.key) }, listener);
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    requests,
    setFault(next) {
      fault = next === null ? null : { ...next };
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
