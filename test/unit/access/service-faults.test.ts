/**
 * The access service when root's side is slow or fails: a grant whose command was answered while
 * the installer was slow ends instead of appearing later; the failed end of one grant does not
 * fail another's grant; an end recorded during an installer call keeps its reason; the number of
 * active grants is bounded by what one installer request can carry. On the real local adapter,
 * wrapped to hold or fail a call.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { MAX_ACTIVE_GRANTS, type AccessHost } from '../../../runtime/access/index.js';
import { OutpostError } from '../../../runtime/errors.js';
import { until } from '../../../scripts/world/until.js';
import { accessPrincipal as principal, accessServiceWorld, sshPublicKey } from '../../fixtures/access-service.js';

const request = () => ({ publicKey: sshPublicKey(), principal, durationSec: 600 });

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => undefined;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

t.test('a grant whose command was answered (timed out) while the installer was slow does not stay in place', async (t) => {
  const world = await accessServiceWorld(t);
  let hold: { promise: Promise<void>; resolve: () => void; called: boolean } | undefined;
  const service = world.service({
    host: (local) => ({
      ...local,
      set: async (entries) => {
        const outcome = await local.set(entries);
        if (hold) {
          hold.called = true;
          await hold.promise;
        }
        return outcome;
      },
    }),
  });
  await service.start();
  const current = hold = { ...deferred(), called: false };
  const abort = new AbortController();
  const granting = service.grant('g-slow', request(), undefined, abort.signal);
  await until('the installer is writing the key', () => (current.called ? true : undefined), 10_000);
  abort.abort(new Error('timed out after 60000 ms'));
  // Recorded ended at once: a kill -9 before the installer answers must not bring it back at the next start.
  await until('it is recorded as ended while the installer is still at it', async () => ((await service.active()).length === 0 ? true : undefined), 10_000);
  hold = undefined;
  current.resolve();
  await t.rejects(granting, /timed out/, 'the grant fails with its command');
  t.same(await service.active(), [], 'it is not active');
  const keys = join(world.dir, 'keys', principal);
  await until('its key is removed', () => (!existsSync(keys) || !readFileSync(keys, 'utf8').includes('g-slow') ? true : undefined), 10_000);
});

t.test("one grant's end failing does not fail another grant; an end recorded during an installer call keeps its reason", async (t) => {
  const world = await accessServiceWorld(t);
  let failEnds = false;
  let refuse: string | undefined;
  let hold: ReturnType<typeof deferred> | undefined;
  const service = world.service({
    host: (local) => ({
      ...local,
      set: async (entries) => {
        const refusedHere = entries.filter((e) => e.id === refuse);
        const outcome = await local.set(entries.filter((e) => e.id !== refuse));
        await hold?.promise;
        return { refused: [...outcome.refused, ...refusedHere.map((e) => ({ id: e.id, reason: 'refused by the test' }))] };
      },
      endSessions: async (name) => {
        if (failEnds) throw new Error('the installer is restarting');
        return local.endSessions(name);
      },
    }) satisfies AccessHost,
  });
  await service.start();
  await service.grant('g-a', request());
  failEnds = true;
  await t.rejects(service.revoke({ grantId: 'g-a' }), /restarting/, 'the revoke of g-a cannot end its sessions yet');
  const granted = await service.grant('g-b', request());
  t.equal(granted.grantId, 'g-b', "g-b is granted all the same: g-a's unfinished end is not its failure");
  failEnds = false;
  await until("g-a's end is finished by the retry", () => (world.records.some((r) => r.msg === 'grant ended: key removed, sessions ended' && r.id === 'g-a') ? true : undefined), 15_000);

  // g-c's set is held while g-b is revoked; then that set refuses g-b.
  hold = deferred();
  refuse = 'g-b';
  const granting = service.grant('g-c', request());
  await new Promise((r) => setTimeout(r, 200));
  const revoking = service.revoke({ grantId: 'g-b' });
  await new Promise((r) => setTimeout(r, 200));
  hold.resolve();
  hold = undefined;
  await granting;
  t.same(await revoking, ['g-b']);
  const events: { type: string; grantId?: string; reason?: string }[] = [];
  for (let entry = await world.outbox.next(); entry; entry = await world.outbox.next()) {
    events.push(JSON.parse(entry.payload) as { type: string });
    await world.outbox.ack(entry.key);
  }
  t.match(events.filter((e) => e.grantId === 'g-b' && e.type !== 'access-granted'), [{ type: 'access-revoked', reason: 'revoked' }], 'g-b ended once, revoked, whatever the held set said of it');
  t.equal(events.filter((e) => e.grantId === 'g-b' && e.type !== 'access-granted').length, 1);
});

t.test('an installer that fails at start is retried; the agent does not die of it', async (t) => {
  const world = await accessServiceWorld(t);
  const first = world.service();
  await first.start();
  await first.grant('g-stored', request());
  await first.stop();
  let calls = 0;
  const restarted = world.service({
    host: (local) => ({
      ...local,
      set: async () => {
        calls += 1;
        throw new Error('the installer exited before answering');
      },
    }),
  });
  await restarted.start();
  await until('the set is tried again after its backoff', () => (calls >= 2 ? true : undefined), 10_000);
  t.pass('still running');
});

t.test('an end whose sessions root refuses for good is finished, not retried forever', async (t) => {
  const world = await accessServiceWorld(t);
  let ends = 0;
  const service = world.service({
    host: (local) => ({
      ...local,
      endSessions: async () => {
        ends += 1;
        throw new OutpostError('INSTALLER_REFUSED', 'principal jit-nobody is not in commands.access.principals');
      },
    }),
  });
  await service.start();
  await service.grant('g-1', request());
  t.same(await service.revoke({ grantId: 'g-1' }), ['g-1'], 'the revoke succeeds: the key is gone');
  await new Promise((r) => setTimeout(r, 2_500));
  t.equal(ends, 1, 'asked once, not again at every retry');
});

t.test(`at most ${MAX_ACTIVE_GRANTS} grants are active at once`, async (t) => {
  const world = await accessServiceWorld(t);
  const service = world.service();
  await service.start();
  for (let i = 0; i < MAX_ACTIVE_GRANTS; i++) await service.grant(`g-${i}`, request());
  await t.rejects(service.grant('g-over', request()), { code: 'ACCESS_REFUSED', message: /revoke one first/ });
  await service.revoke({ grantId: 'g-0' });
  t.ok(await service.grant('g-next', request()), 'one ended, another fits');
});
