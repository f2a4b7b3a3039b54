/** Client side of the local API, used by `outpost status`, `outpost update ...` and other CLI commands. */
import { open, type FileHandle } from 'node:fs/promises';
import { request, type ClientRequest, type OutgoingHttpHeaders } from 'node:http';
import { OutpostError, errorCodes, type ErrorCode } from '../errors.js';

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && code in errorCodes;
}

/** Sends a request to the daemon's socket and parses the JSON answer; bounded by `timeoutMs`. */
export function apiRequest(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 10_000): Promise<unknown> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
  return exchange(socketPath, { method, path, headers, timeoutMs }, (req) => req.end(payload));
}

/**
 * POSTs a file as the request body, read here with the caller's rights (the daemon never opens a
 * path a caller names); the daemon answers once it has taken it in. Bounded by `timeoutMs`.
 */
export async function apiUpload(socketPath: string, path: string, file: string, timeoutMs: number): Promise<unknown> {
  // Opened and checked here, so a file this caller cannot read is a usage error, not a lost daemon.
  let handle: FileHandle;
  let size: number;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new OutpostError('USAGE', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new OutpostError('USAGE', `${file} is not a regular file`);
    size = info.size;
  } catch (err) {
    await handle.close();
    throw err;
  }
  const headers = { 'content-type': 'application/octet-stream', 'content-length': size, 'x-outpost-file-name': encodeURIComponent(file) };
  return exchange(socketPath, { method: 'POST', path, headers, timeoutMs }, (req) => {
    // Exactly the size announced, even if the file grows meanwhile.
    const source = size === 0 ? undefined : handle.createReadStream({ start: 0, end: size - 1 });
    if (!source) {
      void handle.close();
      req.end();
      return;
    }
    source.on('error', (err) => req.destroy(err));
    source.pipe(req);
  });
}

/** One request on the daemon's socket: `send` writes the body; the JSON answer or its error code comes back. */
function exchange(socketPath: string, options: { method: string; path: string; headers: OutgoingHttpHeaders; timeoutMs: number }, send: (req: ClientRequest) => void): Promise<unknown> {
  const { path, timeoutMs } = options;
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: options.method, headers: options.headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (err) {
          reject(new OutpostError('API_BAD_RESPONSE', `outpost API answered ${path} with non-JSON`, { cause: err }));
          return;
        }
        if (res.statusCode !== 200) {
          const { error, code } = parsed as { error?: unknown; code?: unknown };
          // The daemon's own error code travels back, so the CLI exits as the daemon would have.
          reject(new OutpostError(isErrorCode(code) ? code : 'API_BAD_RESPONSE', String(error ?? `HTTP ${res.statusCode}`)));
          return;
        }
        resolve(parsed);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      const hint = code === 'ENOENT' || code === 'ECONNREFUSED' ? ' (is the outpost daemon running?)' : '';
      reject(new OutpostError('API_UNAVAILABLE', `cannot reach outpost at ${socketPath}: ${err.message}${hint}`, { cause: err }));
    });
    send(req);
  });
}

/** GETs a path from the daemon's socket. */
export function apiGet(socketPath: string, path: string, timeoutMs?: number): Promise<unknown> {
  return apiRequest(socketPath, 'GET', path, undefined, timeoutMs);
}
