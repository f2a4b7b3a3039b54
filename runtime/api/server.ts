/**
 * The local API: HTTP/1.1 + JSON on a unix socket (default /run/outpost/api.sock), so no TCP port
 * is ever opened on the device. Who may do what is decided per request from the caller's
 * credentials (access.ts) when an access rule is given, else by the socket's file mode.
 *
 * Routes are a typed registry keyed by "METHOD /path" (STYLE 4); unknown routes get 404, known
 * paths with another method 405, handler failures 500 with the error code but no stack.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { OutpostError, isOutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { PeerLookup } from '../platform/index.js';
import type { AccessRule } from './access.js';

/** A route handler: gets the parsed JSON request body (undefined when empty), returns the 200 body. */
export type Handler = (body: unknown) => Promise<unknown> | unknown;

/** Request bodies are small commands; anything bigger is refused before parsing. */
const maxBodyBytes = 64 * 1024;

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBodyBytes) throw new OutpostError('API_BAD_REQUEST', `request body larger than ${maxBodyBytes} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new OutpostError('API_BAD_REQUEST', 'request body is not JSON', { cause: err });
  }
}
/** A streamed request body (`application/octet-stream` with its length and file name), e.g. a bundle. */
export interface Upload {
  stream: Readable;
  length: number;
  /** The file as the sender names it, for messages: `x-outpost-file-name`. */
  name: string;
}
/** Handles an upload; returns the 200 body. */
export type UploadHandler = (upload: Upload) => Promise<unknown>;

/** Routes keyed by "GET /v1/status" style strings. */
export type Routes = Readonly<Record<`${'GET' | 'POST' | 'PUT' | 'DELETE'} /${string}`, Handler>>;

/** Options for {@link ApiServer}. */
export interface ApiServerOptions {
  socketPath: string;
  /** Octal file mode for the socket, e.g. 0o660. */
  mode: number;
  routes: Routes;
  /** Routes that take a streamed body instead of JSON. */
  uploads?: Readonly<Record<`POST /${string}`, UploadHandler>>;
  log: Logger;
  /** Per-request access check by the caller's credentials (when groups are configured); without it the socket's file mode decides. */
  access?: { peer: PeerLookup; rule: AccessRule };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The upload a request carries; its length must be declared up front (a budget is checked before reading). */
function uploadOf(req: IncomingMessage): Upload {
  const length = Number(req.headers['content-length']);
  if (!Number.isSafeInteger(length) || length < 0) throw new OutpostError('API_BAD_REQUEST', 'an upload needs a content-length');
  return { stream: req, length, name: decodedName(req.headers['x-outpost-file-name']) };
}

/** The sender's file name for messages; a malformed one is not worth refusing the upload over. */
function decodedName(header: string | string[] | undefined): string {
  if (typeof header !== 'string' || header === '') return 'upload';
  try {
    return decodeURIComponent(header);
  } catch {
    return header;
  }
}

/** True when something is accepting connections on the socket (another daemon running). */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** The local API server; a lifecycle Service. */
export class ApiServer {
  readonly name = 'api';
  private server: Server | undefined;

  constructor(private readonly options: ApiServerOptions) {}

  /** Why this request may not run, or null when it may. */
  private refusal(req: IncomingMessage): string | null {
    const { access } = this.options;
    if (!access) return null;
    const peer = access.peer(req.socket);
    if (peer === null) return 'the kernel could not say who is calling (SO_PEERCRED failed)';
    return access.rule(peer, req.method ?? 'GET');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const key = `${req.method ?? 'GET'} ${path}`;
    const upload = req.headers['content-type'] === 'application/octet-stream' ? this.options.uploads?.[key as `POST /${string}`] : undefined;
    const handler = upload ? (): Promise<unknown> => upload(uploadOf(req)) : this.options.routes[key as keyof Routes];
    if (!handler) {
      const known = [...Object.keys(this.options.routes), ...Object.keys(this.options.uploads ?? {})].some((k) => k.endsWith(` ${path}`));
      send(res, known ? 405 : 404, { error: known ? 'method not allowed' : 'not found', path });
      return;
    }
    const refused = this.refusal(req);
    if (refused !== null) {
      this.options.log.warn('api request refused', { method: req.method, path, reason: refused });
      send(res, 403, { error: refused, code: 'API_FORBIDDEN' });
      return;
    }
    try {
      send(res, 200, await handler(upload ? undefined : await readBody(req)));
    } catch (err) {
      // Expected refusals (busy, bad bundle) are 409/400 with the stable code; bugs are 500.
      const status = isOutpostError(err) ? (err.code === 'API_BAD_REQUEST' ? 400 : err.code === 'INTERNAL' ? 500 : 409) : 500;
      if (status === 500) this.options.log.error('api handler failed', { path, err });
      send(res, status, { error: err instanceof Error ? err.message : String(err), code: isOutpostError(err) ? err.code : 'INTERNAL' });
    }
  }

  async start(): Promise<void> {
    const { socketPath, mode } = this.options;
    mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
    if (await socketInUse(socketPath)) {
      throw new OutpostError('API_UNAVAILABLE', `API socket ${socketPath} is in use: another outpost is running`);
    }
    // A socket file left by a killed daemon would make listen() fail with EADDRINUSE.
    try {
      unlinkSync(socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // No whole-request deadline (Node's is 5 min): a bundle from a slow USB stick takes longer;
    // an upload that stalls is cut off by its own idle timeout instead (update/service.ts).
    const server = createServer({ requestTimeout: 0 }, (req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, mode);
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
