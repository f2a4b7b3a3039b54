import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Store } from '../../../runtime/store/index.js';
import { RebootBreaker } from '../../../runtime/health/breaker.js';

const hourSec = 3600;
const hourMs = hourSec * 1000;
const t0 = Date.parse('2026-03-01T10:00:00.000Z');

/** Both clocks, moved by hand. */
function fakeClock(wallMs: number, monotonicMs: number) {
  const clock = { wallMs, mono: monotonicMs, now: () => new Date(clock.wallMs), monotonicMs: () => clock.mono };
  return clock;
}

/** A real store in a temp dir, removed at the end of the test. */
function storeDir(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-breaker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return () => Store.open({ location: join(dir, 'store'), version: 1 });
}

/** What is on disk, read without the breaker's schema. */
async function onDisk(store: Store): Promise<unknown> {
  return store.collection('health-reboots', z.unknown()).get('reboots');
}

t.test('maxReboots are allowed within the window, the next is refused and nothing is recorded for it', async (t) => {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  const clock = fakeClock(t0, 60_000);
  const breaker = await RebootBreaker.open(store, { maxReboots: 3, windowSec: hourSec, bootId: 'boot-a', clock });
  t.same(breaker.state(), { open: false, recent: 0, maxReboots: 3, windowSec: hourSec });
  for (const n of [1, 2, 3]) {
    t.equal(await breaker.allow(`app failing ${n}`), true, `reboot ${n} allowed`);
    t.match(breaker.state(), { open: n === 3, recent: n }, 'closed while below maxReboots, open at it');
    clock.mono += 1000;
  }
  t.equal(await breaker.allow('app failing 4'), false, 'the fourth is refused');
  const state = breaker.state();
  t.equal(state.open, true);
  t.match(state.reason, /^3 remediation reboots within 3600 s \(at most 3\), the last at 2026-03-01T10:00:00.000Z for: app failing 3;/);
  const stored = (await onDisk(store)) as { records: { reason: string; bootId: string; monotonicMs: number; wallTime: string }[] };
  t.same(stored.records.map((r) => r.reason), ['app failing 1', 'app failing 2', 'app failing 3'], 'the refused reboot was not recorded');
  t.same(stored.records[0], { bootId: 'boot-a', wallTime: '2026-03-01T10:00:00.000Z', monotonicMs: 60_000, reason: 'app failing 1' }, 'boot id, wall time and monotonic ms recorded');
});

t.test('maxReboots 0: never a reboot for health', async (t) => {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  const breaker = await RebootBreaker.open(store, { maxReboots: 0, windowSec: hourSec, bootId: 'boot-a', clock: fakeClock(t0, 1000) });
  t.match(breaker.state(), { open: true, recent: 0, reason: /maxReboots is 0/ });
  t.equal(await breaker.allow('app failing'), false);
  t.equal(await onDisk(store), undefined, 'nothing recorded');
});

t.test('each reboot is on disk when allow() resolves: the breaker stays open across a restart into a new boot', async (t) => {
  const open = storeDir(t);
  let store = await open();
  const before = fakeClock(t0, 50_000);
  let breaker = await RebootBreaker.open(store, { maxReboots: 2, windowSec: hourSec, bootId: 'boot-a', clock: before });
  t.equal(await breaker.allow('first'), true);
  before.mono += 1000;
  before.wallMs += 1000;
  t.equal(await breaker.allow('second'), true);
  await store.close();

  // The reboot happened: a new boot id, the monotonic clock starting again near zero.
  store = await open();
  t.teardown(() => store.close());
  const after = fakeClock(t0 + 60_000, 20_000);
  breaker = await RebootBreaker.open(store, { maxReboots: 2, windowSec: hourSec, bootId: 'boot-b', clock: after });
  t.match(breaker.state(), { open: true, recent: 2, reason: /for: second;/ });
  t.equal(await breaker.allow('third'), false, 'no reboot loop');
});

/** Opens a breaker in boot-b over two reboots recorded in boot-a at wall t0, monotonic 10 s. */
async function afterTwoReboots(t: Test, wallMs: number, uptimeMs: number) {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  const earlier = await RebootBreaker.open(store, { maxReboots: 2, windowSec: hourSec, bootId: 'boot-a', clock: fakeClock(t0, 10_000) });
  await earlier.allow('one');
  await earlier.allow('two');
  return RebootBreaker.open(store, { maxReboots: 2, windowSec: hourSec, bootId: 'boot-b', clock: fakeClock(wallMs, uptimeMs) });
}

t.test('age across boots: at least this boot\'s uptime', async (t) => {
  // The wall clock is behind the records (no RTC, not synced yet): only the uptime bound counts.
  const back = t0 - 365 * 86_400_000;
  t.equal((await afterTwoReboots(t, back, hourMs - 1)).state().open, true, 'uptime just under the window: still counted');
  t.match((await afterTwoReboots(t, back, hourMs)).state(), { open: false, recent: 0 }, 'uptime of a whole window: expired');
});

t.test('age across boots: a wall clock set back does not expire records; one set forward past the window does', async (t) => {
  t.equal((await afterTwoReboots(t, t0 - 86_400_000, 5_000)).state().open, true, 'wall clock a day behind the records');
  t.equal((await afterTwoReboots(t, t0 + hourMs - 1, 5_000)).state().open, true, 'wall clock forward by less than the window');
  const forward = await afterTwoReboots(t, t0 + hourMs, 5_000);
  t.match(forward.state(), { open: false, recent: 0 }, 'wall clock forward by the window');
  t.equal(await forward.allow('three'), true);
});

t.test('age in the same boot is monotonic: wall-clock jumps change nothing', async (t) => {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  const clock = fakeClock(t0, 100_000);
  const breaker = await RebootBreaker.open(store, { maxReboots: 1, windowSec: hourSec, bootId: 'boot-a', clock });
  t.equal(await breaker.allow('one'), true);
  clock.wallMs += 10 * hourMs;
  clock.mono += hourMs - 1;
  t.equal(breaker.state().open, true, 'wall clock 10 h on, monotonic just under the window: counted');
  clock.wallMs = t0 - 10 * hourMs;
  clock.mono += 1;
  t.match(breaker.state(), { open: false, recent: 0 }, 'monotonic at the window, wall clock set back: expired');
  t.equal(await breaker.allow('two'), true);
});

t.test('the list stays bounded: records past the window are dropped at a write, a longer list is read only up to maxReboots; unknown fields are kept', async (t) => {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  const raw = store.collection('health-reboots', z.unknown());
  // Written by another release: more records than this config allows, one field this one does not know.
  const records = Array.from({ length: 7 }, (_, n) => ({ bootId: 'boot-a', wallTime: new Date(t0 + n * 1000).toISOString(), monotonicMs: 1000 + n * 1000, reason: `r${n}`, triggeredBy: 'app' }));
  await store.batch().put(raw, 'reboots', { records, format: 2 }).commit();

  const clock = fakeClock(t0 + 10_000, 11_000);
  const breaker = await RebootBreaker.open(store, { maxReboots: 3, windowSec: hourSec, bootId: 'boot-a', clock });
  t.match(breaker.state(), { open: true, recent: 3, reason: /^3 remediation reboots .* for: r6;/ }, 'the newest maxReboots decide');

  clock.mono = 1000 + 5000 + hourMs;
  t.match(breaker.state(), { open: false, recent: 1 }, 'r4 and r5 past the window');
  t.equal(await breaker.allow('r7'), true);
  const stored = (await raw.get('reboots')) as { records: { reason: string; triggeredBy?: string }[] };
  t.same(stored.records.map((r) => r.reason), ['r6', 'r7'], 'only records inside the window were written');
  t.equal(stored.records[0]?.triggeredBy, 'app', 'a field of another release survives the rewrite');
});

t.test('reset clears the records, on disk too', async (t) => {
  const open = storeDir(t);
  let store = await open();
  const clock = fakeClock(t0, 1000);
  let breaker = await RebootBreaker.open(store, { maxReboots: 1, windowSec: hourSec, bootId: 'boot-a', clock });
  await breaker.allow('one');
  t.equal(breaker.state().open, true);
  await breaker.reset();
  t.match(breaker.state(), { open: false, recent: 0 }, 'closed at once');
  await store.close();
  store = await open();
  t.teardown(() => store.close());
  breaker = await RebootBreaker.open(store, { maxReboots: 1, windowSec: hourSec, bootId: 'boot-a', clock });
  t.equal(breaker.state().open, false, 'and after a restart');
  t.equal(await breaker.allow('two'), true);
});

t.test('two reboots asked for at once cannot both take the last free slot', async (t) => {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  const breaker = await RebootBreaker.open(store, { maxReboots: 1, windowSec: hourSec, bootId: 'boot-a', clock: fakeClock(t0, 1000) });
  t.same(await Promise.all([breaker.allow('app'), breaker.allow('db')]), [true, false]);
});

t.test('records in a shape this release cannot read: the breaker opens (fail safe) instead of failing the start, until a reset', async (t) => {
  const store = await storeDir(t)();
  t.teardown(() => store.close());
  // As a later release might have written it before a rollback to this one.
  await store.batch().put(store.collection('health-reboots', z.unknown()), 'reboots', { records: 'v2', entries: [{ at: 5 }] }).commit();
  const breaker = await RebootBreaker.open(store, { maxReboots: 3, windowSec: hourSec, bootId: 'boot-a', clock: fakeClock(t0, 60_000) });
  t.match(breaker.state(), { open: true, recent: 0, reason: /cannot be read/ }, 'open, and says why');
  t.equal(await breaker.allow('check x'), false, 'no reboot on an unreadable count');
  await breaker.reset();
  t.match(breaker.state(), { open: false }, 'an operator reset closes it');
  t.equal(await breaker.allow('check x'), true);
  t.match(await onDisk(store), { records: [{ reason: 'check x' }] }, 'and the list is written afresh');
});
