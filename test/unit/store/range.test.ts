/**
 * Collection.range/iterate/keys (bounded and streamed reads of large collections) and
 * WriteBatch.afterCommit (counters that follow the disk).
 */
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Store } from '../../../runtime/store/index.js';

const counter = z.strictObject({ n: z.number().int() });

async function openTemp(t: Test): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-store-range-'));
  const store = await Store.open({ location: join(dir, 'db'), version: 1 });
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

t.test('range: bounds, limit, reverse, in key order', async (t) => {
  const store = await openTemp(t);
  const c = store.collection('c', counter);
  const batch = store.batch();
  for (const key of ['a/1', 'a/2', 'a/3', 'b/1', 'b/2']) batch.put(c, key, { n: Number(key.slice(2)) });
  await batch.put(store.collection('other', counter), 'a/0', { n: 0 }).commit();

  t.same(await c.range({}), await c.entries(), 'no options: everything, like entries()');
  t.same((await c.range({ gte: 'a/', lt: 'a0' })).map(([k]) => k), ['a/1', 'a/2', 'a/3'], 'a prefix as [p/, p0)');
  t.same((await c.range({ gte: 'a/2', lt: 'b/2' })).map(([k]) => k), ['a/2', 'a/3', 'b/1'], 'gte inclusive, lt exclusive');
  t.same(await c.range({ limit: 1 }), [['a/1', { n: 1 }]], 'the first entry');
  t.same((await c.range({ gte: 'a/', lt: 'a0', reverse: true, limit: 1 })).map(([k]) => k), ['a/3'], 'the last key of a prefix');
  t.same(await c.range({ gte: 'c' }), [], 'an empty range');
  t.same(await c.range({ limit: 0 }), [], 'limit 0');
  await t.rejects(c.range({ limit: -1 }), { code: 'INTERNAL', message: /non-negative integer/ });
  await t.rejects(c.range({ limit: 1.5 }), { code: 'INTERNAL' });
});

t.test('range and iterate validate values like get and entries; keys does not read them', async (t) => {
  const store = await openTemp(t);
  await store.batch().put(store.collection('c', z.unknown()), 'x', { n: 'text' }).put(store.collection('c', z.unknown()), 'y', { n: 2 }).commit();
  const c = store.collection('c', counter);
  await t.rejects(c.range({ limit: 1 }), { code: 'STORE_CORRUPT', message: /c\/x does not match/ });
  t.same(await c.range({ gte: 'y' }), [['y', { n: 2 }]]);
  const streamed: string[] = [];
  await t.rejects(
    (async () => {
      for await (const [key] of c.iterate()) streamed.push(key);
    })(),
    { code: 'STORE_CORRUPT' },
  );
  const keys: string[] = [];
  for await (const key of c.keys()) keys.push(key);
  t.same(keys, ['x', 'y']);
});

t.test('iterate streams a large collection and can stop early', async (t) => {
  const store = await openTemp(t);
  const c = store.collection('c', counter);
  const batch = store.batch();
  for (let i = 0; i < 5000; i++) batch.put(c, String(i).padStart(6, '0'), { n: i });
  await batch.commit();
  let count = 0;
  let sum = 0;
  for await (const [, value] of c.iterate()) {
    count += 1;
    sum += value.n;
  }
  t.equal(count, 5000);
  t.equal(sum, (4999 * 5000) / 2);
  const firstThree: string[] = [];
  for await (const key of c.keys({ gte: '000100' })) {
    firstThree.push(key);
    if (firstThree.length === 3) break;
  }
  t.same(firstThree, ['000100', '000101', '000102'], 'breaking out closes the iterator');
  const reversed: number[] = [];
  for await (const [, v] of c.iterate({ reverse: true, limit: 2 })) reversed.push(v.n);
  t.same(reversed, [4999, 4998]);
});

t.test('afterCommit hooks run once after a successful commit, not after a failed one', async (t) => {
  const store = await openTemp(t);
  const c = store.collection('c', counter);
  const calls: string[] = [];
  const batch = store.batch().put(c, 'k', { n: 1 });
  batch.afterCommit(() => calls.push('first'));
  batch.afterCommit(() => {
    calls.push('second');
    throw new Error('hook bug');
  }, (err) => calls.push(`reported: ${(err as Error).message}`));
  t.same(calls, [], 'nothing before the commit');
  await batch.commit();
  t.same(calls, ['first', 'second', 'reported: hook bug'], 'in order; a throwing hook does not fail the commit');
  await batch.commit();
  t.equal(calls.length, 3, 'a second commit does not run the hooks again');

  const empty = store.batch();
  let ran = false;
  empty.afterCommit(() => (ran = true));
  await empty.commit();
  t.ok(ran, 'an empty batch commits trivially and runs its hooks');

  const failing = store.batch().put(c, 'k', { n: 2 });
  let failed = false;
  failing.afterCommit(() => (failed = true));
  await store.close();
  await t.rejects(failing.commit(), { code: 'STORE_IO' });
  t.notOk(failed, 'no hook after a failed commit');
});
