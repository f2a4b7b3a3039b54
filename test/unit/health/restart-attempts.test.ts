import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { RestartAttempts } from '../../../runtime/health/restart-attempts.js';
import { Store } from '../../../runtime/store/index.js';

t.test('an entry in a shape this release does not read is dropped, not fatal (it is a backoff hint)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-restart-attempts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  t.teardown(() => store.close());
  const raw = store.collection('health-restart-attempts', z.unknown());
  // As a later release might have written it before a rollback to this one.
  await store.batch().put(raw, 'modem', { attempts: '3', bootId: 'boot-a', since: { monotonicMs: 5 } }).put(raw, 'app', { attempts: 2, bootId: 'boot-a', monotonicMs: 1000 }).commit();
  const clock = { now: () => new Date('2026-03-01T10:00:00.000Z'), monotonicMs: () => 2000 };
  const attempts = await RestartAttempts.open(store, { bootId: 'boot-a', clock });
  t.equal(attempts.last('modem'), undefined, 'the unreadable entry is as if absent');
  t.same(attempts.last('app'), { attempts: 2, monotonicMs: 1000 }, 'the readable one still resumes');
  await attempts.record('modem', 1);
  t.same(await raw.get('modem'), { attempts: 1, bootId: 'boot-a', monotonicMs: 2000 }, 'the next attempt overwrites it');
});
