/** Client side of the local API, used by `outpost status` and other CLI commands. */
import { request } from 'node:http';
import { OutpostError } from '../errors.js';

/** GETs a path from the daemon's socket and parses the JSON body; bounded by `timeoutMs`. */
export function apiGet(socketPath: string, path: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch (err) {
          reject(new OutpostError('API_BAD_RESPONSE', `outpost API answered ${path} with non-JSON`, { cause: err }));
          return;
        }
        if (res.statusCode !== 200) {
          const message = (body as { error?: unknown }).error;
          reject(new OutpostError('API_BAD_RESPONSE', `outpost API ${path}: HTTP ${res.statusCode}: ${String(message)}`));
          return;
        }
        resolve(body);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      const hint = code === 'ENOENT' || code === 'ECONNREFUSED' ? ' (is the outpost daemon running?)' : '';
      reject(new OutpostError('API_UNAVAILABLE', `cannot reach outpost at ${socketPath}: ${err.message}${hint}`, { cause: err }));
    });
    req.end();
  });
}
