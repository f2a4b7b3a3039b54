import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CheckProbe } from '../probe.js';
import { abortable } from './abort.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { errnoCode, messageOf, readText } from './files.js';
import { Findings, round2 } from './outcome.js';

const zonePrefix = 'thermal_zone';
const zoneDirRe = /^thermal_zone\d+$/;

/** The hottest thermal zone (of those named in `zones`, by their `type`) against `maxCelsius`. */
export function temperatureProbe(check: CheckOf<'temperature'>, deps: ProbeDeps): CheckProbe {
  const root = deps.thermalRoot ?? '/sys/class/thermal';
  const wanted = check.zones === undefined ? undefined : new Set(check.zones);
  return {
    async run(signal) {
      let entries: string[];
      try {
        entries = await abortable(signal, () => readdir(root));
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
        entries = [];
      }
      const zones = entries.filter((name) => zoneDirRe.test(name)).sort((a, b) => Number(a.slice(zonePrefix.length)) - Number(b.slice(zonePrefix.length)));
      const found = new Findings();
      const present: string[] = [];
      let hottest: { celsius: number; zone: string } | undefined;
      for (const zone of zones) {
        const type = (await readText(join(root, zone, 'type'), signal)).trim();
        present.push(type);
        if (wanted !== undefined && !wanted.has(type)) continue;
        const file = join(root, zone, 'temp');
        let millidegrees: number;
        try {
          millidegrees = Number.parseInt(await readText(file, signal), 10);
        } catch (err) {
          if (signal.aborted) throw err;
          // A broken sensor fails every read; `zones` leaves it out.
          found.fail(`cannot read ${file} (${type}): ${messageOf(err)}; list the other zones in "zones" to leave it out`);
          continue;
        }
        if (Number.isNaN(millidegrees)) {
          found.fail(`${file} (${type}) does not hold a temperature`);
          continue;
        }
        const celsius = round2(millidegrees / 1000);
        if (celsius > check.maxCelsius) found.fail(`${zone} (${type}) is at ${celsius} °C, above ${check.maxCelsius} °C`);
        if (hottest === undefined || celsius > hottest.celsius) hottest = { celsius, zone: `${zone} (${type})` };
      }
      found.measure({ celsius: hottest?.celsius, maxCelsius: check.maxCelsius });
      if (zones.length === 0) found.note('no thermal zones');
      else if (hottest === undefined && wanted !== undefined) {
        // A fleet-wide config meets boards without the named sensors: as with no zones at all, nothing to judge.
        found.note(`no thermal zones of type ${[...wanted].join(', ')} (present: ${present.join(', ')})`);
      } else if (hottest !== undefined) found.note(`hottest: ${hottest.zone} at ${hottest.celsius} °C`);
      return found.outcome();
    },
  };
}
