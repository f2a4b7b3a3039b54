/** Client side of the local API, used by `outpost status`, `outpost update ...` and other CLI commands. */
import { request } from 'node:http';
import { OutpostError, errorCodes, type ErrorCode } from '../errors.js';

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && code in errorCodes;
}

/** Sends a request to the daemon's socket and parses the JSON answer; bounded by `timeoutMs`. */
export function apiRequest(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    const req = request({ socketPath, path, method, headers, timeout: timeoutMs }, (res) => {
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
    req.end(payload);
  });
}

/** GETs a path from the daemon's socket. */
export function apiGet(socketPath: string, path: string, timeoutMs?: number): Promise<unknown> {
  return apiRequest(socketPath, 'GET', path, undefined, timeoutMs);
}
