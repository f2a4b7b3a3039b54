/**
 * Where TUF metadata comes from: the update server over HTTP(S), or an unpacked offline bundle.
 * Both stop reading past the size limit the client gives (a hostile server cannot make the
 * device buffer an endless body) and report "not found" as undefined, as the client expects.
 */
import { open } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join, normalize, sep } from 'node:path';
import { OutpostError } from '../errors.js';
import type { Fetcher } from './tuf/index.js';

/** Fetches metadata relative to `baseUrl` (which should end with `/`). */
export function httpFetcher(baseUrl: string, timeoutMs = 30_000): Fetcher {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return {
    fetch: (path, maxBytes) =>
      new Promise((resolve, reject) => {
        const url = new URL(path, base);
        const get = url.protocol === 'https:' ? httpsGet : httpGet;
        const req = get(url, { timeout: timeoutMs }, (res) => {
          if (res.statusCode === 404) {
            res.resume();
            resolve(undefined);
            return;
          }
          if (res.statusCode !== 200) {
            res.resume();
            reject(new OutpostError('UPDATE_UNAVAILABLE', `update server answered ${url.href} with HTTP ${res.statusCode}`, { transient: true }));
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            chunks.push(chunk);
            if (size > maxBytes) res.destroy();
          });
          res.on('close', () => resolve(new Uint8Array(Buffer.concat(chunks))));
          res.on('error', () => undefined);
        });
        req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        req.on('error', (err) => reject(new OutpostError('UPDATE_UNAVAILABLE', `cannot reach the update server for ${url.href}: ${err.message}`, { cause: err, transient: true })));
      }),
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
