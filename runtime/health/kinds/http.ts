/**
 * A GET through node:http / node:https. Not `fetch`: node's fetch (undici) parses HTTP with
 * WebAssembly, which the daemon's `--jitless` removes, and the first check killed the daemon.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { messageOf } from './files.js';

/** How much of a body `bodyMatch` sees; the rest is not downloaded. */
export const maxBodyBytes = 64 * 1024;
/** How much of a body a failing status's detail quotes. */
const quotedBodyChars = 200;

/** Up to `max` bytes of a response body as text; the response is destroyed after, so the rest is never read. */
export async function readBounded(response: Readable, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      const part = chunk.subarray(0, max - size);
      chunks.push(part);
      size += part.byteLength;
      if (size >= max) break;
    }
  } finally {
    response.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The response's head, or a rejection; the request is destroyed at the abort. */
function get(url: string, signal: AbortSignal): Promise<IncomingMessage> {
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', signal, headers: { 'user-agent': 'outpost-health' } }, resolve);
    req.on('error', reject);
    req.end();
  });
}

/**
 * A GET whose status must be one of `status` and whose body (its first 64 KiB) must match
 * `bodyMatch`. Redirects are not followed: the check judges what the URL itself answers.
 */
export function httpProbe(check: CheckOf<'http'>, deps: ProbeDeps): CheckProbe {
  const bodyMatch = check.bodyMatch === undefined ? undefined : new RegExp(check.bodyMatch);
  const passing = new Set(check.status);
  return {
    async run(signal) {
      const started = deps.monotonicMs();
      let response: IncomingMessage;
      try {
        response = await get(check.url, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        return { ok: false, detail: `GET ${check.url} failed: ${messageOf(err)}` };
      }
      const status = response.statusCode ?? 0;
      if (!passing.has(status)) {
        const body = (await readBounded(response, quotedBodyChars * 4)).slice(0, quotedBodyChars).trim();
        const location = response.headers.location;
        return {
          ok: false,
          detail: `GET ${check.url} answered ${status}, expected ${check.status.join(' or ')}${location === undefined ? '' : ` (redirect to ${location})`}${body === '' ? '' : `: ${body}`}`,
          measurements: { status, responseMs: deps.monotonicMs() - started },
        };
      }
      if (bodyMatch === undefined) {
        response.destroy();
        return { ok: true, measurements: { status, responseMs: deps.monotonicMs() - started } };
      }
      const body = await readBounded(response, maxBodyBytes);
      const measurements = { status, responseMs: deps.monotonicMs() - started };
      if (bodyMatch.test(body)) return { ok: true, measurements };
      return { ok: false, detail: `GET ${check.url} answered ${status} but its body (first ${maxBodyBytes} bytes) does not match /${check.bodyMatch}/: ${body.slice(0, quotedBodyChars).trim()}`, measurements };
    },
  };
}
