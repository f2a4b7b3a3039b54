/**
 * Pressure stall information (Documentation/accounting/psi.rst): /proc/pressure/{cpu,memory,io}
 * and a cgroup's `*.pressure` hold lines such as
 *
 *     some avg10=0.12 avg60=0.05 avg300=0.01 total=12345
 *     full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *
 * avgN are percentages of wall time over the last N seconds; `total` is microseconds.
 */

/** One line of a pressure file. */
export interface PressureLine {
  avg10: number;
  avg60: number;
  avg300: number;
  totalUsec: number;
}

/** A parsed pressure file; `full` is absent for `cpu` on kernels before 5.13. */
export interface Pressure {
  some?: PressureLine;
  full?: PressureLine;
}

const lineRe = /^(some|full) avg10=(\d+(?:\.\d+)?) avg60=(\d+(?:\.\d+)?) avg300=(\d+(?:\.\d+)?) total=(\d+)$/;

/** Parses a pressure file; lines it does not know are ignored so a future field does not break the check. */
export function parsePressure(text: string): Pressure {
  const pressure: Pressure = {};
  for (const line of text.split('\n')) {
    const m = lineRe.exec(line.trim());
    if (m === null) continue;
    pressure[m[1] as 'some' | 'full'] = { avg10: Number(m[2]), avg60: Number(m[3]), avg300: Number(m[4]), totalUsec: Number(m[5]) };
  }
  return pressure;
}

/** Why a PSI limit cannot be checked here, for a failing outcome's detail. */
export function noPsiDetail(file: string): string {
  return `${file} is missing: this kernel has no pressure stall information (CONFIG_PSI, or psi=0 on the kernel command line); remove the PSI limit or enable PSI`;
}
