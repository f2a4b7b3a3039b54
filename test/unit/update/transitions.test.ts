import { readFileSync } from 'node:fs';
import t from 'tap';
import { errorEvents } from '../../../runtime/update/machine.js';
import { updateStates, type UpdateState } from '../../../runtime/update/record.js';
import { allows, nextState, transitions, updateEvents } from '../../../runtime/update/transitions.js';

/**
 * The events each state accepts, as docs/architecture.md documents them for operators: an
 * independent source, so a row added, dropped or misrouted in the table fails here.
 */
function documentedEvents(): Map<string, string[]> {
  const doc = readFileSync(new URL('../../../docs/architecture.md', import.meta.url), 'utf8');
  const rows = new Map<string, string[]>();
  for (const line of doc.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length !== 5 || !/^`\w+`/.test(cells[1] ?? '') || !/^`\w+`/.test(cells[3] ?? '')) continue;
    const events = [...(cells[3] ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1] ?? '');
    for (const state of (cells[1] ?? '').matchAll(/`(\w+)`/g)) rows.set(state[1] ?? '', events);
  }
  return rows;
}

t.test('each state accepts exactly the events docs/architecture.md documents; everything else is refused as a bug', async (t) => {
  const documented = documentedEvents();
  for (const state of updateStates.filter((s) => s !== 'idle')) {
    const accepted = updateEvents.filter((event) => allows(state, event));
    t.same(accepted.sort(), [...(documented.get(state) ?? [])].sort(), `${state}: ${accepted.join(', ')}`);
  }
  t.ok(allows('idle', 'begin'), 'idle: begin');
  t.throws(() => nextState('idle', 'healthy'), { code: 'INTERNAL' }, 'an event a state does not accept is refused');
  t.throws(() => nextState('committed', 'loop'), { code: 'INTERNAL' });
  for (const [state, event] of Object.entries(errorEvents)) t.ok(allows(state as UpdateState, event), `a permanent error in ${state} (${event}) is a row`);
  const keys = transitions.map(([from, event]) => `${from}:${event}`);
  t.equal(new Set(keys).size, keys.length, 'no duplicate rows');
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
