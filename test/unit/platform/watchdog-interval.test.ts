import t from 'tap';
import { watchdogIntervalMs } from '../../../runtime/platform/index.js';

// sd_watchdog_enabled(3): WATCHDOG_USEC is the timeout; WATCHDOG_PID, if set, names who must ping.
const pid = 4242;
const cases: Array<[string, NodeJS.ProcessEnv, number | undefined]> = [
  ['unset', {}, undefined],
  ['30 s timeout → ping every 15 s', { WATCHDOG_USEC: '30000000' }, 15_000],
  ['odd microseconds round down', { WATCHDOG_USEC: '3000001' }, 1500],
  ['tiny timeout never yields 0', { WATCHDOG_USEC: '1' }, 1],
  ['our PID', { WATCHDOG_USEC: '20000000', WATCHDOG_PID: String(pid) }, 10_000],
  ['another PID', { WATCHDOG_USEC: '20000000', WATCHDOG_PID: '1' }, undefined],
  ['PID without USEC', { WATCHDOG_PID: String(pid) }, undefined],
  ['zero', { WATCHDOG_USEC: '0' }, undefined],
  ['empty', { WATCHDOG_USEC: '' }, undefined],
  ['negative', { WATCHDOG_USEC: '-5000000' }, undefined],
  ['not a number', { WATCHDOG_USEC: 'infinity' }, undefined],
  ['fraction', { WATCHDOG_USEC: '1.5' }, undefined],
  ['whitespace', { WATCHDOG_USEC: ' 1000000' }, undefined],
  ['beyond safe integers', { WATCHDOG_USEC: '18446744073709551615' }, undefined],
  ['invalid PID', { WATCHDOG_USEC: '20000000', WATCHDOG_PID: 'self' }, undefined],
  ['empty PID', { WATCHDOG_USEC: '20000000', WATCHDOG_PID: '' }, undefined],
];

for (const [name, env, expected] of cases) {
  t.equal(watchdogIntervalMs(env, pid), expected, name);
}
