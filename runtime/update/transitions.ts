/**
 * The update state machine as a table (STYLE 2): states do work and return an event; only this
 * table picks the next state. A test checks every (state, event) pair is either here or refused.
 *
 *   idle → downloading → downloaded → applying → deployed → rebooting → probation → committed → idle
 *               │            │           │                    │            │  ↺ power lost during the trial
 *               └────────────┴───────────┴→ idle (failed)     │            └→ rollingBack → rolledBack → idle
 *               └────────────┴→ idle (cancelled)              └→ rolledBack (bootloader fell back)
 *   idle → rollingBack (an operator's rollback, to the deployment kept for it)
 */
import { OutpostError } from '../errors.js';
import type { UpdateState } from './record.js';

/** Every event a state can return. */
export const updateEvents = [
  'begin',
  'downloaded',
  'applied',
  'deployed',
  'rebootRequested',
  'bootedNew',
  'fellBack',
  'healthy',
  'unhealthy',
  'trialReset',
  'trialRestarted',
  'restored',
  'failed',
  'cancelled',
  'rollbackRequested',
  'loop',
  'done',
] as const;
/** An event name. */
export type UpdateEvent = (typeof updateEvents)[number];

/** [from, event, to] rows. */
export const transitions: readonly (readonly [UpdateState, UpdateEvent, UpdateState])[] = [
  ['idle', 'begin', 'downloading'],
  // An operator's `outpost update rollback`: back to the deployment kept for it, as a failed trial goes.
  ['idle', 'rollbackRequested', 'rollingBack'],
  ['downloading', 'downloaded', 'downloaded'],
  ['downloading', 'failed', 'idle'],
  ['downloading', 'cancelled', 'idle'],
  ['downloaded', 'applied', 'applying'],
  ['downloaded', 'failed', 'idle'],
  ['downloaded', 'cancelled', 'idle'],
  ['applying', 'deployed', 'deployed'],
  ['applying', 'failed', 'idle'],
  ['deployed', 'rebootRequested', 'rebooting'],
  ['rebooting', 'rebootRequested', 'rebooting'],
  ['rebooting', 'bootedNew', 'probation'],
  ['rebooting', 'fellBack', 'rolledBack'],
  ['rebooting', 'trialReset', 'rollingBack'],
  ['rebooting', 'loop', 'rollingBack'],
  ['probation', 'healthy', 'committed'],
  ['probation', 'unhealthy', 'rollingBack'],
  ['probation', 'trialReset', 'rollingBack'],
  ['probation', 'trialRestarted', 'probation'],
  ['probation', 'loop', 'rollingBack'],
  ['rollingBack', 'rebootRequested', 'rollingBack'],
  ['rollingBack', 'restored', 'rolledBack'],
  ['rollingBack', 'loop', 'rolledBack'],
  ['committed', 'done', 'idle'],
  ['rolledBack', 'done', 'idle'],
] as const;

const table = new Map(transitions.map(([from, event, to]) => [`${from}:${event}`, to]));

/** The next state, or an error for a pair the table does not allow (a bug, never user input). */
export function nextState(from: UpdateState, event: UpdateEvent): UpdateState {
  const to = table.get(`${from}:${event}`);
  if (to === undefined) throw new OutpostError('INTERNAL', `update state machine: no transition from ${from} on ${event}`);
  return to;
}

/** Whether `from` accepts `event`. */
export function allows(from: UpdateState, event: UpdateEvent): boolean {
  return table.has(`${from}:${event}`);
}
