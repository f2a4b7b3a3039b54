import { join } from 'node:path';
import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { formatBytes, readOptionalText, readText } from './files.js';
import { Findings } from './outcome.js';
import { noPsiDetail, parsePressure } from './pressure.js';

/** `MemAvailable` of a /proc/meminfo text in bytes; undefined on kernels before 3.14, which lack it. */
export function parseMemAvailable(meminfo: string): number | undefined {
  const m = /^MemAvailable:\s+(\d+) kB$/m.exec(meminfo);
  return m === null ? undefined : Number(m[1]) * 1024;
}

/** MemAvailable against a minimum, and memory PSI avg10 against limits. */
export function memoryProbe(check: CheckOf<'memory'>, deps: ProbeDeps): CheckProbe {
  const procRoot = deps.procRoot ?? '/proc';
  return {
    async run(signal) {
      const found = new Findings();
      if (check.minAvailableBytes !== undefined) {
        const file = join(procRoot, 'meminfo');
        const availableBytes = parseMemAvailable(await readText(file, signal));
        found.measure({ availableBytes, minAvailableBytes: check.minAvailableBytes });
        if (availableBytes === undefined) found.fail(`${file} has no MemAvailable line (kernel older than 3.14); use the PSI limits instead`);
        else if (availableBytes < check.minAvailableBytes) found.fail(`available memory ${formatBytes(availableBytes)} is below the minimum ${formatBytes(check.minAvailableBytes)} (MemAvailable in ${file})`);
      }
      if (check.maxSomeAvg10 !== undefined || check.maxFullAvg10 !== undefined) {
        const file = join(procRoot, 'pressure', 'memory');
        const text = await readOptionalText(file, signal);
        if (text === undefined) found.fail(noPsiDetail(file));
        else {
          const psi = parsePressure(text);
          for (const [line, max] of [['some', check.maxSomeAvg10], ['full', check.maxFullAvg10]] as const) {
            if (max === undefined) continue;
            const avg10 = psi[line]?.avg10;
            found.measure({ [`${line}Avg10`]: avg10, [`max${line === 'some' ? 'Some' : 'Full'}Avg10`]: max });
            if (avg10 === undefined) found.fail(`${file} has no "${line}" line`);
            else if (avg10 > max) found.fail(`memory pressure ${line} avg10 is ${avg10}%, above ${max}% (${file}): tasks are stalling on memory`);
          }
        }
      }
      return found.outcome();
    },
  };
}
