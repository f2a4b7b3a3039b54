/**
 * Health check kinds: one probe per configured check, chosen by `kind` from a typed registry so
 * the compiler demands a probe for every kind the schema has (STYLE 4). Every probe returns at its
 * signal's abort, having killed what it started; an abandoned run fails with a detail saying so.
 */
import type { HealthCheckConfig } from '../../config/index.js';
import type { CheckProbe } from '../probe.js';
import { cpuProbe } from './cpu.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { diskProbe } from './disk.js';
import { execProbe } from './exec.js';
import { messageOf } from './files.js';
import { CallsStillHung } from './abort.js';
import { httpProbe } from './http.js';
import { memoryProbe } from './memory.js';
import { mqttProbe } from './mqtt.js';
import { tcpProbe } from './tcp.js';
import { temperatureProbe } from './temperature.js';
import { unitProbe } from './unit.js';

export type { ProbeDeps } from './deps.js';
export { parsePressure, type Pressure, type PressureLine } from './pressure.js';

type Kind = HealthCheckConfig['kind'];

const kinds: { readonly [K in Kind]: (check: CheckOf<K>, deps: ProbeDeps) => CheckProbe } = {
  exec: execProbe,
  http: httpProbe,
  tcp: tcpProbe,
  unit: unitProbe,
  disk: diskProbe,
  memory: memoryProbe,
  cpu: cpuProbe,
  temperature: temperatureProbe,
  mqtt: mqttProbe,
};

/** What a check looks at, for the details of runs that ended without a verdict of their own. */
function subject(check: HealthCheckConfig): string {
  switch (check.kind) {
    case 'exec':
      return check.command.join(' ');
    case 'http':
      return `GET ${check.url}`;
    case 'tcp':
      return `TCP ${check.host}:${check.port}`;
    case 'unit':
      return check.unit;
    case 'disk':
      return check.path;
    case 'cpu':
      return check.unit ?? check.cgroup ?? 'host CPU';
    default:
      return check.kind;
  }
}

/** The probe of one configured check; it keeps the state a check needs between runs (CPU samples, restart history). */
export function createProbe(check: HealthCheckConfig, deps: ProbeDeps): CheckProbe {
  // TypeScript cannot correlate kinds[check.kind] with check's own type; the mapped type above guarantees it.
  const probe = (kinds[check.kind] as (check: HealthCheckConfig, deps: ProbeDeps) => CheckProbe)(check, deps);
  return {
    async run(signal) {
      try {
        return await probe.run(signal);
      } catch (err) {
        if (signal.aborted) return { ok: false, detail: `${check.kind} check ${check.name} (${subject(check)}) did not finish within ${check.timeoutSec} s and was stopped` };
        if (err instanceof CallsStillHung) return { ok: false, detail: `${check.kind} check ${check.name} (${subject(check)}): ${err.message}`, unmeasured: true };
        return { ok: false, detail: `${check.kind} check ${check.name} (${subject(check)}): ${messageOf(err)}` };
      }
    },
  };
}
