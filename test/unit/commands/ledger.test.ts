/** The replay store and result record: ids and nonces seen, unfinished runs, pruning by expiry. */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandLedger, type LedgerEntry } from '../../../runtime/commands/ledger.js';
import { Store } from '../../../runtime/store/index.js';

async function openStore(t: Test): Promise<{ store: Store; location: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-ledger-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const location = join(dir, 'db');
  const store = await Store.open({ location, version: 1 });
  return { store, location };
}

const entry = (nonce: string, expires: string, state: LedgerEntry['state'] = 'started'): LedgerEntry => ({
  state,
  type: 'diagnostics',
  nonce,
  expires,
  replyTopic: 'outpost/v1/gw/cmd/result',
});

t.test('an id and its nonce are seen once recorded, across a reopen', async (t) => {
  const { store, location } = await openStore(t);
  const ledger = new CommandLedger(store);
  t.equal(await ledger.seen('c1', 'n1'), undefined);
  await ledger.record(store.batch(), 'c1', entry('n1', '2030-01-01T00:10:00Z')).commit();
  t.equal(await ledger.seen('c1', 'n9'), 'id');
  t.equal(await ledger.seen('c2', 'n1'), 'nonce', 'the same nonce under a new id is a replay');
  await store.close();
  const again = await Store.open({ location, version: 1 });
  t.teardown(() => again.close());
  const reopened = new CommandLedger(again);
  t.equal(await reopened.seen('c1', 'n1'), 'id');
  t.same((await reopened.unfinished()).map(([id]) => id), ['c1'], 'a run a power cut cut short is found at start');
});

t.test('prune: only finished entries whose command expired go, with their nonce', async (t) => {
  const { store } = await openStore(t);
  t.teardown(() => store.close());
  const ledger = new CommandLedger(store);
  await ledger.record(store.batch(), 'old', entry('n-old', '2030-01-01T00:00:00Z', 'finished')).commit();
  await ledger.record(store.batch(), 'live', entry('n-live', '2030-01-01T01:00:00Z', 'finished')).commit();
  await ledger.record(store.batch(), 'running', entry('n-run', '2030-01-01T00:00:00Z')).commit();
  t.equal(await ledger.prune(new Date('2030-01-01T00:30:00Z')), 1);
  t.equal(await ledger.seen('old', 'n-old'), undefined);
  t.equal(await ledger.seen('live', 'n-live'), 'id');
  t.equal(await ledger.seen('running', 'n-run'), 'id', 'an unfinished one stays until it is answered');
});
