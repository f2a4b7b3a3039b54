import { connect } from 'node:net';
import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { ProbeAborted } from './abort.js';
import { errnoCode, messageOf } from './files.js';

/** Passes when a TCP connection to host:port opens; the connection is closed at once. */
export function tcpProbe(check: CheckOf<'tcp'>, deps: ProbeDeps): CheckProbe {
  const target = `${check.host}:${check.port}`;
  return {
    run(signal) {
      const started = deps.monotonicMs();
      return new Promise((resolve, reject) => {
        if (signal.aborted) {
          reject(new ProbeAborted('aborted'));
          return;
        }
        const socket = connect({ host: check.host, port: check.port });
        const onAbort = (): void => {
          socket.destroy();
          reject(new ProbeAborted('aborted'));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        socket.once('connect', () => {
          signal.removeEventListener('abort', onAbort);
          socket.destroy();
          resolve({ ok: true, measurements: { connectMs: deps.monotonicMs() - started } });
        });
        socket.once('error', (err) => {
          signal.removeEventListener('abort', onAbort);
          socket.destroy();
          const code = errnoCode(err);
          const why = code === 'ECONNREFUSED' ? 'refused: nothing listens there' : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? `failed: ${check.host} does not resolve` : `failed: ${messageOf(err)}`;
          resolve({ ok: false, detail: `TCP connection to ${target} ${why}` });
        });
      });
    },
  };
}
