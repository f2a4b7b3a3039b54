import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';

/** The broker link is up now, or was within `withinSec` on the monotonic clock. */
export function mqttProbe(check: CheckOf<'mqtt'>, deps: ProbeDeps): CheckProbe {
  return {
    async run() {
      const link = deps.link?.();
      if (link === undefined) return { ok: false, detail: 'no broker configured' };
      if (link.connected) return { ok: true };
      if (link.lastConnectedMs === undefined) return { ok: false, detail: 'never connected to the broker since outpost started', measurements: { withinSec: check.withinSec } };
      const disconnectedSec = Math.max(0, Math.round((deps.monotonicMs() - link.lastConnectedMs) / 1000));
      const measurements = { disconnectedSec, withinSec: check.withinSec };
      if (disconnectedSec <= check.withinSec) return { ok: true, detail: `disconnected from the broker ${disconnectedSec} s ago`, measurements, provisional: true };
      return { ok: false, detail: `disconnected from the broker for ${disconnectedSec} s, longer than ${check.withinSec} s`, measurements };
    },
  };
}
