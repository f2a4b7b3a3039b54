import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { messageOf } from './files.js';

/** How much of a body `bodyMatch` sees; the rest is not downloaded. */
export const maxBodyBytes = 64 * 1024;
/** How much of a body a failing status's detail quotes. */
const quotedBodyChars = 200;

/** Up to `max` bytes of a body as text; the rest of the stream is cancelled, so the connection is not drained. */
export async function readBounded(body: ReadableStream<Uint8Array> | null, max: number): Promise<string> {
  if (body === null) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < max) {
      const { done, value } = await reader.read();
      if (done) break;
      const part = value.subarray(0, max - size);
      chunks.push(part);
      size += part.byteLength;
    }
  } finally {
    // Also ends a body still streaming at the abort; a finished one ignores it.
    await reader.cancel().catch(() => undefined);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
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
      let response: Response;
      try {
        response = await fetch(check.url, { signal, redirect: 'manual', headers: { 'user-agent': 'outpost-health' } });
      } catch (err) {
        if (signal.aborted) throw err;
        // fetch's own message is "fetch failed"; the reason (ECONNREFUSED...) is in its cause.
        const cause = err instanceof Error && err.cause !== undefined ? `: ${messageOf(err.cause)}` : '';
        return { ok: false, detail: `GET ${check.url} failed: ${messageOf(err)}${cause}` };
      }
      const status = response.status;
      if (!passing.has(status)) {
        const body = (await readBounded(response.body, quotedBodyChars * 4)).slice(0, quotedBodyChars).trim();
        const location = response.headers.get('location');
        return {
          ok: false,
          detail: `GET ${check.url} answered ${status}, expected ${check.status.join(' or ')}${location === null ? '' : ` (redirect to ${location})`}${body === '' ? '' : `: ${body}`}`,
          measurements: { status, responseMs: deps.monotonicMs() - started },
        };
      }
      if (bodyMatch === undefined) {
        await response.body?.cancel().catch(() => undefined);
        return { ok: true, measurements: { status, responseMs: deps.monotonicMs() - started } };
      }
      const body = await readBounded(response.body, maxBodyBytes);
      const measurements = { status, responseMs: deps.monotonicMs() - started };
      if (bodyMatch.test(body)) return { ok: true, measurements };
      return { ok: false, detail: `GET ${check.url} answered ${status} but its body (first ${maxBodyBytes} bytes) does not match /${check.bodyMatch}/: ${body.slice(0, quotedBodyChars).trim()}`, measurements };
    },
  };
}
