/**
 * A systemd unit is active and systemd has not been restarting it. `NRestarts` counts automatic
 * restarts since the unit was last started by hand, so restarts within the window are the
 * counter's growth since the window began. Invariant: `history` holds the readings where the
 * counter changed, oldest first, and the newest of them taken before the window is kept as the
 * window's starting value; a counter that went down (a manual restart) starts the history again.
 */
import type { CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { messageOf } from './files.js';
import { Findings } from './outcome.js';

/** Bound on the history: a unit restarting at every run of a 1 s check over a day would hold 86 400. */
const maxHistory = 1024;

/** `Key=Value` lines of `systemctl show`. */
export function parseShow(stdout: string): Map<string, string> {
  const properties = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) properties.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  return properties;
}

interface Reading {
  atMs: number;
  nRestarts: number;
}

/** Restarts seen within the last `windowMs`, recording `now`'s reading into `history` (which it prunes). */
export function restartsWithin(history: Reading[], now: Reading, windowMs: number): number {
  const last = history.at(-1);
  if (last !== undefined && now.nRestarts < last.nRestarts) history.length = 0;
  if (history.length === 0 || history.at(-1)?.nRestarts !== now.nRestarts) history.push(now);
  const windowStart = now.atMs - windowMs;
  // Keep one reading from before the window: the counter's value when the window began.
  let firstKept = 0;
  while (firstKept + 1 < history.length && (history[firstKept + 1] as Reading).atMs <= windowStart) firstKept += 1;
  history.splice(0, Math.max(firstKept, history.length - maxHistory));
  return now.nRestarts - (history[0] as Reading).nRestarts;
}

/** `systemctl show` of the unit: ActiveState must be `active` and NRestarts must not grow too fast. */
export function unitProbe(check: CheckOf<'unit'>, deps: ProbeDeps): CheckProbe {
  const history: Reading[] = [];
  return {
    async run(signal) {
      let stdout: string;
      try {
        // The signal ends the call at the check's timeout; this backstop only stops Exec's 10 min default from cutting a longer one.
        ({ stdout } = await deps.exec.run('systemctl', ['show', '--property=ActiveState,NRestarts', '--', check.unit], { signal, timeoutMs: (check.timeoutSec + 1) * 1000 }));
      } catch (err) {
        if (signal.aborted) throw err;
        return { ok: false, detail: `could not ask systemd about ${check.unit}: ${messageOf(err)}`, unmeasured: true };
      }
      const properties = parseShow(stdout);
      const found = new Findings();
      const state = properties.get('ActiveState');
      if (state !== 'active') found.fail(`${check.unit} is ${state ?? 'in no known state (systemctl show printed no ActiveState)'}, not active (systemctl status ${check.unit} says why)`);
      const counter = Number(properties.get('NRestarts'));
      // systemd before 235 has no NRestarts: only the state can be judged there.
      if (properties.has('NRestarts') && Number.isInteger(counter)) {
        const baseline = history.length > 0;
        const restarts = restartsWithin(history, { atMs: deps.monotonicMs(), nRestarts: counter }, check.restartWindowSec * 1000);
        if (!baseline) found.provisional('first reading: restarts are counted from here');
        found.measure({ restarts, maxRestarts: check.maxRestarts, restartWindowSec: check.restartWindowSec, nRestarts: counter });
        if (restarts > check.maxRestarts) found.fail(`systemd restarted ${check.unit} ${restarts} times within ${check.restartWindowSec} s, more than ${check.maxRestarts} (journalctl -u ${check.unit} says why)`);
      }
      return found.outcome();
    },
  };
}
