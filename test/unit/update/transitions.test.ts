import t from 'tap';
import { updateStates } from '../../../runtime/update/record.js';
import { allows, nextState, transitions, updateEvents } from '../../../runtime/update/transitions.js';

t.test('every (state, event) pair is either a row of the table or refused', async (t) => {
  let rows = 0;
  for (const state of updateStates) {
    for (const event of updateEvents) {
      if (allows(state, event)) {
        rows += 1;
        t.ok(updateStates.includes(nextState(state, event)), `${state} --${event}--> a known state`);
      } else {
        t.throws(() => nextState(state, event), { code: 'INTERNAL' }, `${state} refuses ${event}`);
      }
    }
  }
  t.equal(rows, transitions.length, 'no duplicate rows');
});

t.test('every state is reachable from idle and can get back to idle', async (t) => {
  const reach = (from: string, edges: [string, string][]) => {
    const seen = new Set([from]);
    for (let changed = true; changed; ) {
      changed = false;
      for (const [a, b] of edges) if (seen.has(a) && !seen.has(b)) (seen.add(b), (changed = true));
    }
    return seen;
  };
  const forward = transitions.map(([a, , b]) => [a, b] as [string, string]);
  const backward = transitions.map(([a, , b]) => [b, a] as [string, string]);
  t.same([...reach('idle', forward)].sort(), [...updateStates].sort(), 'all reachable');
  t.same([...reach('idle', backward)].sort(), [...updateStates].sort(), 'all lead back to idle');
});

t.test('once deployed, every path ends in committed or rolledBack, never straight back to idle', async (t) => {
  for (const [from, event, to] of transitions) {
    if (['deployed', 'rebooting', 'probation', 'rollingBack'].includes(from)) t.not(to, 'idle', `${from} --${event}--> ${to}`);
  }
});
