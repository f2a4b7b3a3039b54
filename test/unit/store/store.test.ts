import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { z } from 'zod';
import { Store, type Migration } from '../../../runtime/store/index.js';
import { isOutpostError } from '../../../runtime/errors.js';

const counter = z.strictObject({ n: z.number().int() });

function tempStore(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'db');
}

function corruptManifest(location: string): void {
  for (const file of readdirSync(location)) if (file.startsWith('MANIFEST')) writeFileSync(join(location, file), 'not a manifest');
}

t.test('a batch is atomic across collections and survives reopen', async (t) => {
  const location = tempStore(t);
  const store = await Store.open({ location, version: 1 });
  const a = store.collection('a', counter);
  const b = store.collection('b', counter);
  await store.batch().put(a, 'x', { n: 1 }).put(b, 'y', { n: 2 }).commit();
  await store.batch().del(a, 'x').put(b, 'y', { n: 3 }).commit();
  await store.close();

  const again = await Store.open({ location, version: 1 });
  t.equal(await again.collection('a', counter).get('x'), undefined);
  t.same(await again.collection('b', counter).get('y'), { n: 3 });
  t.same(await again.collection('b', counter).entries(), [['y', { n: 3 }]]);
  await again.close();
});

t.test('a value that does not match its schema is reported as corruption, not returned', async (t) => {
  const location = tempStore(t);
  const store = await Store.open({ location, version: 1 });
  await store.batch().put(store.collection('a', z.unknown()), 'x', { n: 'text' }).commit();
  await t.rejects(store.collection('a', counter).get('x'), { code: 'STORE_CORRUPT', message: /a\/x does not match/ });
  await store.close();
});

t.test('a second opener in the same process gets STORE_LOCKED', async (t) => {
  const location = tempStore(t);
  const store = await Store.open({ location, version: 1 });
  await t.rejects(Store.open({ location, version: 1 }), { code: 'STORE_LOCKED', message: /locked by another process/ });
  await store.close();
});

t.test('another process holding the store makes open fail with STORE_LOCKED, not a crash', async (t) => {
  const location = tempStore(t);
  const child = fork(new URL('../../fixtures/hold-store.ts', import.meta.url), [location], { execArgv: ['--import=tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  await t.rejects(Store.open({ location, version: 1 }), { code: 'STORE_LOCKED' });
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  const store = await Store.open({ location, version: 1 });
  t.pass('the lock is released when the holder dies, even by SIGKILL');
  await store.close();
});

t.test('a commit that is not durable is seen at once and outlives a SIGKILL of its process (the page cache has it)', async (t) => {
  const location = tempStore(t);
  const child = fork(new URL('../../fixtures/hold-store.ts', import.meta.url), [location, '--write'], { execArgv: ['--import=tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  const store = await Store.open({ location, version: 1 });
  t.same(await store.collection('a', z.number()).entries(), [['y', 2]], 'the removal holds; the durable write before it too');
  await store.close();
});

t.test('a corrupt store is refused with STORE_CORRUPT unless repair is allowed', async (t) => {
  const location = tempStore(t);
  const store = await Store.open({ location, version: 1 });
  await store.batch().put(store.collection('a', counter), 'x', { n: 7 }).commit();
  await store.close();
  corruptManifest(location);

  const refused = await Store.open({ location, version: 1 }).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(isOutpostError(refused, 'STORE_CORRUPT'), 'refused as STORE_CORRUPT');
  t.match(String(refused), /repairs it on start/, 'the message says what happens next');
  const events: unknown[] = [];
  const repaired = await Store.open({ location, version: 1, repair: true, onEvent: (e) => events.push(e) });
  t.same(await repaired.collection('a', counter).get('x'), { n: 7 }, 'data recovered by repair');
  t.match(events, [{ kind: 'repaired', backup: /db\.corrupt-\d+$/ }], 'a copy of the damaged store is kept');
  await repaired.close();
});

t.test('migrations run in order in one batch each; a newer store is refused', async (t) => {
  const location = tempStore(t);
  const v1 = await Store.open({ location, version: 1 });
  await v1.batch().put(v1.collection('old', z.number()), 'k', 5).commit();
  await v1.close();

  const events: unknown[] = [];
  const v2 = await Store.open({
    location,
    version: 2,
    onEvent: (e) => events.push(e),
    migrations: [
      {
        from: 1,
        describe: 'wrap numbers in objects',
        keepsOlderReadable: false,
        run: async ({ raw, batch, collection }) => {
          const target = collection('a', counter);
          for (const [key, value] of await raw('old')) batch.put(target, key, { n: Number(value) });
        },
      },
    ],
  });
  t.equal(v2.version, 2);
  t.same(await v2.collection('a', counter).get('k'), { n: 5 });
  t.same(events, [{ kind: 'migrated', from: 1, to: 2 }]);
  await v2.close();

  await t.rejects(Store.open({ location, version: 1 }), { code: 'STORE_TOO_NEW' });
});

t.test('a newer store that still reads as this format (the newer release only added data) opens as it is; the version stays', async (t) => {
  const location = tempStore(t);
  await (await Store.open({ location, version: 1 })).close();
  const newer = await Store.open({
    location,
    version: 2,
    migrations: [{ from: 1, describe: 'add a collection', keepsOlderReadable: true, run: async ({ batch, collection }) => void batch.put(collection('added', z.number()), 'k', 1) }],
  });
  await newer.batch().put(newer.collection('a', counter), 'k', { n: 1, addedByNewer: true } as never).commit();
  await newer.close();
    const events: unknown[] = [];
  const older = await Store.open({ location, version: 1, onEvent: (e) => events.push(e) });
  t.same(events, [{ kind: 'newer', version: 2, readableFrom: 1 }]);
  t.equal(older.version, 2, 'not written back down');
  t.match(await older.collection('a', counter.loose()).get('k'), { n: 1 }, 'reads what it knows');
  await older.batch().put(older.collection('a', counter), 'k', { n: 2 }).commit();
  await older.close();
  const again = await Store.open({ location, version: 2 });
  t.equal(again.version, 2);
  t.same(await again.collection('added', z.number()).get('k'), 1, 'the newer data is still there');
  await again.close();
});

t.test('holdBreaking: a step older releases cannot read waits for an open where no release is on trial, so the release before can still open the store', async (t) => {
  const location = tempStore(t);
  const v1 = await Store.open({ location, version: 1 });
  // v1 deployed the newer release, which now starts on trial.
  await v1.batch().put(v1.collection('old', z.number()), 'k', 5).put(v1.collection('trial', z.boolean()), 'on', true).commit();
  await v1.close();
  const migrations = [
    { from: 1, describe: 'add a collection', keepsOlderReadable: true, run: async ({ batch, collection }: Parameters<Migration['run']>[0]) => void batch.put(collection('added', z.number()), 'k', 1) },
    { from: 2, describe: 'rewrite old as objects', keepsOlderReadable: false, run: async ({ raw, batch, collection }: Parameters<Migration['run']>[0]) => {
      for (const [key, value] of await raw('old')) batch.put(collection('old', counter), key, { n: Number(value) });
    } },
  ];
  const events: unknown[] = [];
  // The caller decides from the store itself (the daemon reads the update record), before anything else runs.
  const trial = (store: Store) => store.collection('trial', z.boolean()).get('on').then((on) => on === true);
  const onTrial = await Store.open({ location, version: 3, migrations, holdBreaking: trial, onEvent: (e) => events.push(e) });
  t.same(events, [{ kind: 'migrated', from: 1, to: 2 }, { kind: 'held', from: 2, describe: 'rewrite old as objects' }]);
  t.equal(onTrial.version, 2);
  await onTrial.close();

  const rolledBack = await Store.open({ location, version: 1 });
  t.equal(await rolledBack.collection('old', z.number()).get('k'), 5, 'the release before reads its data after a rollback');
  await rolledBack.close();

  const stillOnTrial = await Store.open({ location, version: 3, migrations, holdBreaking: trial });
  t.equal(stillOnTrial.version, 2, 'held while the trial lasts');
  // Written in the old format while held: a step run at an open migrates it too (no writer races it there).
  await stillOnTrial.batch().put(stillOnTrial.collection('old', z.number()), 'k2', 7).put(stillOnTrial.collection('trial', z.boolean()), 'on', false).commit();
  await stillOnTrial.close();

  const committed = await Store.open({ location, version: 3, migrations, holdBreaking: trial });
  t.equal(committed.version, 3, 'completed at the first open with no trial');
  t.same(await committed.collection('old', counter).entries(), [['k', { n: 5 }], ['k2', { n: 7 }]]);
  await committed.close();
  await t.rejects(Store.open({ location, version: 1 }), { code: 'STORE_TOO_NEW', message: /format version 3, readable from version 3 on/ });
});
