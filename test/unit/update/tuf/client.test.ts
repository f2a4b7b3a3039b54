import t, { type Test } from 'tap';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { isOutpostError, type ErrorCode } from '../../../../runtime/errors.js';
import { releasesFor, type TrustedTargets } from '../../../../runtime/update/tuf/index.js';
import { DAY, HOUR, T0, capture, forge, readSigned, releaseTarget, trustedState, world } from './fixture.js';

const commitA = 'a'.repeat(64);
const commitB = 'b'.repeat(64);

/** Expects `promise` to reject with `code` and a message matching `re`; returns the message. */
async function rejects(t: Test, promise: Promise<unknown>, code: ErrorCode, re: RegExp): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isOutpostError(err, code), `rejected with ${code}`, { got: err });
  const message = err instanceof Error ? err.message : '';
  t.match(message, re);
  return message;
}

t.test('full flow: first refresh from the initial root, targets with custom fields, then updates', async (t) => {
  const w = await world(t);
  const r1 = releaseTarget(1, commitA);
  w.repo.addTarget(r1.name, r1.file);
  w.repo.addTarget('releases/other-hw/x86_64/9', { ...releaseTarget(9, commitB).file, custom: { ...releaseTarget(9, commitB).file.custom, hardware: 'other-hw', arch: 'x86_64' } });
  await w.publish();
  w.clock.set(HOUR);

  const targets = await w.client.refresh();
  t.same(targets.versions, { root: 1, timestamp: 2, snapshot: 2, targets: 2 });
  t.same(targets.list().map((x) => x.name), ['releases/gw-1/aarch64/1', 'releases/other-hw/x86_64/9']);
  t.same(targets.get(r1.name), { name: r1.name, ...r1.file });
  t.equal(targets.referenceTime.getTime(), T0.getTime() + HOUR);
  const mine = releasesFor(targets.list(), 'gw-1', 'aarch64');
  t.same(mine.map((r) => r.custom.version), [1], 'the other hardware class is ignored');
  t.same(w.fetcher.requests, ['2.root.json', 'timestamp.json', 'snapshot.json', 'targets.json']);

  const stored = await trustedState(w.store);
  t.same(Object.keys(stored).sort(), ['not-earlier-than', 'snapshot', 'targets', 'timestamp'], 'root stays the bundled one until it changes');
  t.same(stored['not-earlier-than'], { time: new Date(T0.getTime() + HOUR).toISOString() });

  // Nothing new: the equal timestamp ends the cycle without fetching snapshot or targets (§5.4.3.1).
  w.fetcher.requests.length = 0;
  t.same((await w.client.refresh()).versions, targets.versions);
  t.same(w.fetcher.requests, ['2.root.json', 'timestamp.json']);

  // A new release v2 with a delta from v1.
  const r2 = releaseTarget(2, commitB, commitA);
  w.repo.addTarget(r2.name, r2.file);
  w.repo.addTarget(`deltas/${commitA}-${commitB}`, { length: 1234, hashes: { sha256: 'c'.repeat(64) }, custom: { kind: 'ostree-static-delta', from: commitA, to: commitB } });
  await w.publish();
  const next = await w.client.refresh();
  t.same(next.versions, { root: 1, timestamp: 3, snapshot: 3, targets: 3 });
  t.same(releasesFor(next.list(), 'gw-1', 'aarch64').map((r) => r.custom.version), [2, 1]);
  t.equal(next.get(`deltas/${commitA}-${commitB}`)?.length, 1234);

  // Removing a target works too.
  w.repo.removeTarget(r1.name);
  await w.publish();
  t.notOk((await w.client.refresh()).get(r1.name));
});

t.test('concurrent refreshes share one run', async (t) => {
  const w = await world(t);
  const [a, b] = await Promise.all([w.client.refresh(), w.client.refresh()]);
  t.equal(a, b);
  t.equal(w.fetcher.requests.filter((p) => p === 'timestamp.json').length, 1);
});

/**
 * Checks a refresh is rejected with the trusted state unchanged: all of it by default, or the
 * records named in `keys` (roles verified before the bad one are legitimately persisted, §5.4.5).
 */
async function expectRejected(t: Test, w: Awaited<ReturnType<typeof world>>, code: ErrorCode, re: RegExp, good: TrustedTargets, keys?: string[]): Promise<void> {
  const pick = (state: Record<string, unknown>) => (keys ? Object.fromEntries(keys.map((k) => [k, state[k]])) : state);
  const before = pick(await trustedState(w.store));
  await rejects(t, w.client.refresh(), code, re);
  t.same(pick(await trustedState(w.store)), before, `trusted state unchanged${keys ? ` (${keys.join(', ')})` : ''}`);
  // What the device acts on is still the last good targets.
  t.ok(good.versions.targets >= 1);
}

t.test('tampered targets.json is rejected (hash from snapshot, then signature)', async (t) => {
  const w = await world(t);
  const r1 = releaseTarget(1, commitA);
  w.repo.addTarget(r1.name, r1.file);
  await w.publish();
  const good = await w.client.refresh();

  // The attacker swaps the commit in the published targets (and the next publish is not yet out).
  w.repo.addTarget(r1.name, { ...r1.file, custom: { ...r1.file.custom, ref: 'x' } });
  await w.publish();
  const path = join(w.repoDir, 'targets.json');
  writeFileSync(path, readFileSync(path, 'utf8').replace(`"ref": "x"`, `"ref": "evil"`));
  await expectRejected(t, w, 'UPDATE_SIGNATURE', /targets\.json: .*(tampered|replaced)/, good, ['targets', 'not-earlier-than']);
  const stored = (await trustedState(w.store)).targets as { json: string };
  t.notOk(stored.json.includes('evil'), 'the tampered file was not persisted');

  // Signature alone (a snapshot without hashes, signed with the real snapshot key) still catches it.
  const snapshot = readSigned(w.repoDir, 'snapshot.json') as { meta: Record<string, { version: number }>; version: number };
  const snapshotBytes = forge(w.repoDir, 'snapshot.json', { ...snapshot, version: snapshot.version + 1, meta: { 'targets.json': { version: snapshot.meta['targets.json']?.version ?? 0 } } }, [w.keys.snapshot]);
  const timestamp = readSigned(w.repoDir, 'timestamp.json') as { version: number };
  forge(w.repoDir, 'timestamp.json', { ...timestamp, version: timestamp.version + 1, meta: { 'snapshot.json': { version: snapshot.version + 1, length: snapshotBytes.length } } }, [w.keys.timestamp]);
  await rejects(t, w.client.refresh(), 'UPDATE_SIGNATURE', /targets\.json: no valid signature by a targets key/);
});

t.test('metadata signed below threshold is rejected', async (t) => {
  const w = await world(t, { rootKeys: (k) => [k.root, k.root2], rootThreshold: 2 });
  const good = await w.client.refresh();
  // A new root signed by only one of the two root keys.
  const root = readSigned(w.repoDir, 'root.json') as { version: number };
  forge(w.repoDir, '2.root.json', { ...root, version: 2 }, [w.keys.root]);
  await expectRejected(t, w, 'UPDATE_THRESHOLD', /2\.root\.json: signed by 1 of the 2 root keys trusted root v1 requires/, good);
  // A key signing twice does not make two: the list itself is refused.
  const bytes = readFileSync(join(w.repoDir, '2.root.json'), 'utf8');
  const env = JSON.parse(bytes) as { signatures: unknown[]; signed: unknown };
  writeFileSync(join(w.repoDir, '2.root.json'), JSON.stringify({ ...env, signatures: [...env.signatures, ...env.signatures] }));
  await expectRejected(t, w, 'UPDATE_METADATA_INVALID', /2\.root\.json: signatures list key id [0-9a-f]+ more than once/, good);
  // The writer refuses to make such a root in the first place.
  await rejects(t, w.repo.replaceRoleKeys({ role: 'targets', add: [w.keys.root2], rootKeys: [w.keys.root] }), 'UPDATE_THRESHOLD', /signed by 1 of the 2 root keys root v1 requires/);
  t.notOk(existsSync(join(w.repoDir, '3.root.json')) || readSigned(w.repoDir, 'root.json').version !== 1, 'nothing written');
});

t.test('a signature list naming one key id twice is refused even when the threshold is met (tuf-conformance test_duplicate_sig_keyids)', async (t) => {
  const w = await world(t);
  const good = await w.client.refresh();
  const snapshot = readSigned(w.repoDir, 'snapshot.json') as { version: number };
  forge(w.repoDir, 'snapshot.json', { ...snapshot, version: snapshot.version + 1 }, [w.keys.snapshot]);
  const env = JSON.parse(readFileSync(join(w.repoDir, 'snapshot.json'), 'utf8')) as { signatures: unknown[] };
  const doubled = JSON.stringify({ ...env, signatures: [...env.signatures, ...env.signatures] });
  writeFileSync(join(w.repoDir, 'snapshot.json'), doubled);
  const timestamp = readSigned(w.repoDir, 'timestamp.json') as { version: number };
  forge(w.repoDir, 'timestamp.json', { ...timestamp, version: timestamp.version + 1, meta: { 'snapshot.json': { version: snapshot.version + 1, length: Buffer.byteLength(doubled) } } }, [w.keys.timestamp]);
  await expectRejected(t, w, 'UPDATE_METADATA_INVALID', /snapshot\.json: signatures list key id [0-9a-f]+ more than once/, good, ['snapshot', 'targets']);
});

t.test('a root trusted before repeated key ids were refused still opens (it never counted a key twice)', async (t) => {
  const w = await world(t);
  const env = JSON.parse(readFileSync(join(w.repoDir, '1.root.json'), 'utf8')) as { signatures: unknown[] };
  // Written by an outpost that accepted the list: the threshold counted each key once even then.
  const doubled = JSON.stringify({ ...env, signatures: [...env.signatures, ...env.signatures] });
  await w.store.batch().put(w.store.collection('tuf', z.unknown()), 'root', { json: doubled }).commit();
  const targets = await w.client.refresh();
  t.equal(targets.versions.root, 1, 'the stored root is used, not refused as a corrupt store');
  // A fetched root with the same list is still refused.
  const root = readSigned(w.repoDir, 'root.json') as { version: number };
  forge(w.repoDir, '2.root.json', { ...root, version: 2 }, [w.keys.root]);
  const next = JSON.parse(readFileSync(join(w.repoDir, '2.root.json'), 'utf8')) as { signatures: unknown[] };
  writeFileSync(join(w.repoDir, '2.root.json'), JSON.stringify({ ...next, signatures: [...next.signatures, ...next.signatures] }));
  await rejects(t, w.client.refresh(), 'UPDATE_METADATA_INVALID', /2\.root\.json: signatures list key id [0-9a-f]+ more than once/);
});

t.test('expiry: a freeze is caught, and a clock set back is judged by the not-earlier-than time', async (t) => {
  const w = await world(t);
  w.clock.set(12 * HOUR);
  const good = await w.client.refresh();

  // Freeze: the repository stops being re-signed; a day later the timestamp has expired.
  w.clock.set(25 * HOUR);
  await expectRejected(t, w, 'UPDATE_EXPIRED', /timestamp\.json: v1 expired at 2030-01-02T00:00:00Z \(reference time 2030-01-02T01:00:00/, good);

  // The operator re-signs at T0+2d; the device refreshes at T0+2d12h and remembers that time.
  w.clock.set(2 * DAY);
  await w.publish();
  w.clock.set(2 * DAY + 12 * HOUR);
  await w.client.refresh();
  const floor = { time: new Date(T0.getTime() + 2 * DAY + 12 * HOUR).toISOString() };
  t.same((await trustedState(w.store))['not-earlier-than'], floor);

  // The device reboots with its clock back near T0 (no RTC): expiry is judged by the remembered
  // time, which never moves backwards.
  w.clock.set(HOUR);
  t.ok(await w.client.refresh(), 'still valid at the remembered time');
  t.same((await trustedState(w.store))['not-earlier-than'], floor, 'a refresh with an earlier wall clock leaves it alone');

  // Once the remembered time is past the timestamp's expiry, the metadata is expired even though
  // the wall clock (T0+1h) would call it valid: replaying a frozen repository to a device whose
  // clock was set back does not work.
  await w.store.batch().put(w.store.collection('tuf', z.unknown()), 'not-earlier-than', { time: new Date(T0.getTime() + 3 * DAY + HOUR).toISOString() }).commit();
  await expectRejected(t, w, 'UPDATE_EXPIRED', /timestamp\.json: v2 expired at 2030-01-04T00:00:00Z \(reference time 2030-01-04T01:00:00\.000Z\)/, good);
});

t.test('replayed old timestamp and snapshot (version rollback) are rejected', async (t) => {
  const w = await world(t);
  const old = capture(t, w.repoDir);
  w.repo.addTarget(releaseTarget(1, commitA).name, releaseTarget(1, commitA).file);
  await w.publish();
  const good = await w.client.refresh();
  t.equal(good.versions.timestamp, 2);

  // The whole old repository replayed: the timestamp goes back.
  w.fetcher.dir = old;
  await expectRejected(t, w, 'UPDATE_ROLLBACK', /timestamp\.json: version 1 is older than the trusted version 2/, good);

  // Only the old snapshot replayed under the current timestamp: not the file the timestamp signed.
  w.fetcher.dir = w.repoDir;
  await w.publish();
  w.fetcher.overrides.set('snapshot.json', new Uint8Array(readFileSync(join(old, 'snapshot.json'))));
  await rejects(t, w.client.refresh(), 'UPDATE_SIGNATURE', /snapshot\.json: .*not the .* timestamp v3 signed/);
  w.fetcher.overrides.clear();
  const good3 = await w.client.refresh();
  t.equal(good3.versions.snapshot, 3);

  // With the timestamp and snapshot keys (a compromised online signer): a timestamp naming an older snapshot (§5.4.3.2)...
  const ts = readSigned(w.repoDir, 'timestamp.json') as { version: number };
  forge(w.repoDir, 'timestamp.json', { ...ts, version: 10, meta: { 'snapshot.json': { version: 2 } } }, [w.keys.timestamp]);
  await expectRejected(t, w, 'UPDATE_ROLLBACK', /names snapshot v2, older than the trusted v3/, good);
  // ...and a newer snapshot that lists an older targets.json (§5.5.5).
  const snap = readSigned(w.repoDir, 'snapshot.json');
  forge(w.repoDir, 'snapshot.json', { ...snap, version: 11, meta: { 'targets.json': { version: 1 } } }, [w.keys.snapshot]);
  forge(w.repoDir, 'timestamp.json', { ...ts, version: 10, meta: { 'snapshot.json': { version: 11 } } }, [w.keys.timestamp]);
  await rejects(t, w.client.refresh(), 'UPDATE_ROLLBACK', /snapshot\.json: lists targets\.json v1, older than the trusted v3/);
  const after = await trustedState(w.store);
  t.match((after.snapshot as { json: string }).json, /"version": 3/, 'the trusted snapshot is still v3');
});

t.test('root rotation is accepted, and an old root key alone can no longer sign', async (t) => {
  const w = await world(t);
  await w.client.refresh();
  const { generateKey } = await import('../../../../runtime/trust/index.js');
  const newRoot = [generateKey(), generateKey()];
  await w.repo.rotateRoot({ oldKeys: [w.keys.root], newKeys: newRoot, threshold: 2 });
  const newer = [generateKey()];
  await w.repo.rotateRoot({ oldKeys: newRoot, newKeys: newer, threshold: 1 });
  w.repo.addTarget(releaseTarget(1, commitA).name, releaseTarget(1, commitA).file);
  await w.publish();
  const rotated = await w.client.refresh();
  t.equal(rotated.versions.root, 3, 'walked 2.root.json and 3.root.json');
  t.ok(rotated.get(releaseTarget(1, commitA).name));
  t.match(((await trustedState(w.store)).root as { json: string }).json, /"version": 3/, 'root v3 persisted');

  // The attacker still holding the first root key publishes a root v4 trusting their own targets key.
  const evil = generateKey();
  const root3 = readSigned(w.repoDir, 'root.json') as { roles: Record<string, unknown>; keys: Record<string, unknown> };
  forge(w.repoDir, '4.root.json', { ...root3, version: 4, keys: { ...root3.keys, [evil.keyid]: evil.key, [w.keys.root.keyid]: w.keys.root.key }, roles: { ...root3.roles, root: { keyids: [w.keys.root.keyid], threshold: 1 }, targets: { keyids: [evil.keyid], threshold: 1 } } }, [w.keys.root, evil]);
  await expectRejected(t, w, 'UPDATE_SIGNATURE', /4\.root\.json: no valid signature by a root key of trusted root v3/, rotated);
  // Signed by the rotated-out keys of v2 as well: still not v3's root keys.
  forge(w.repoDir, '4.root.json', { ...root3, version: 4 }, [w.keys.root, ...newRoot]);
  await expectRejected(t, w, 'UPDATE_SIGNATURE', /no valid signature by a root key of trusted root v3/, rotated);

});

t.test('root chain: a wrong version in N.root.json is refused', async (t) => {
  const w = await world(t);
  await w.client.refresh();
  const root = readSigned(w.repoDir, 'root.json');
  forge(w.repoDir, '2.root.json', { ...root, version: 1 }, [w.keys.root]);
  await rejects(t, w.client.refresh(), 'UPDATE_ROLLBACK', /2\.root\.json: version 1, but the trusted root is already v1/);
  forge(w.repoDir, '2.root.json', { ...root, version: 3 }, [w.keys.root]);
  await rejects(t, w.client.refresh(), 'UPDATE_METADATA_INVALID', /2\.root\.json: has version 3, expected 2/);
});

t.test('a revoked targets key is rejected after revocation', async (t) => {
  const w = await world(t);
  await w.client.refresh();
  const { generateKey, publicOf } = await import('../../../../runtime/trust/index.js');
  const fresh = generateKey();
  const old = w.keys.targets;
  await w.repo.replaceRoleKeys({ role: 'targets', revoke: [old.keyid], add: [publicOf(fresh)], rootKeys: [w.keys.root] });
  // The writer refuses the revoked key...
  await rejects(t, w.repo.publish({ targetsKey: old, snapshotKey: w.keys.snapshot, timestampKey: w.keys.timestamp }), 'UPDATE_SIGNATURE', /not a targets key in root v2 \(revoked/);
  // ...and publishes with the new one; the device follows.
  w.repo.addTarget(releaseTarget(1, commitA).name, releaseTarget(1, commitA).file);
  await w.repo.publish({ targetsKey: fresh, snapshotKey: w.keys.snapshot, timestampKey: w.keys.timestamp });
  const good = await w.client.refresh();
  t.same([good.versions.root, good.versions.targets], [2, 2]);

  // The thief of the old targets key (with the online snapshot/timestamp keys) signs targets v4.
  const targets = readSigned(w.repoDir, 'targets.json') as { targets: Record<string, unknown> };
  const evilTargets = forge(w.repoDir, 'targets.json', { ...targets, version: 4, targets: { ...targets.targets, 'releases/gw-1/aarch64/99': releaseTarget(99, commitB).file } }, [old]);
  const snap = readSigned(w.repoDir, 'snapshot.json');
  const { createHash } = await import('node:crypto');
  const snapBytes = forge(w.repoDir, 'snapshot.json', { ...snap, version: 4, meta: { 'targets.json': { version: 4, length: evilTargets.length, hashes: { sha256: createHash('sha256').update(evilTargets).digest('hex') } } } }, [w.keys.snapshot]);
  const ts = readSigned(w.repoDir, 'timestamp.json');
  forge(w.repoDir, 'timestamp.json', { ...ts, version: 4, meta: { 'snapshot.json': { version: 4, length: snapBytes.length } } }, [w.keys.timestamp]);
  const before = await trustedState(w.store);
  await rejects(t, w.client.refresh(), 'UPDATE_SIGNATURE', /targets\.json: no valid signature by a targets key of root v2 \(tampered, or signed by an untrusted or revoked key\)/);
  t.same((await trustedState(w.store)).targets, before.targets, 'trusted targets unchanged');
});

t.test('fast-forward recovery: rotating the timestamp key drops trusted timestamp/snapshot (§5.3.11)', async (t) => {
  const w = await world(t);
  await w.client.refresh();
  // The timestamp key leaks; the attacker fast-forwards the device to timestamp v1000.
  const ts = readSigned(w.repoDir, 'timestamp.json');
  const real = readFileSync(join(w.repoDir, 'timestamp.json'));
  forge(w.repoDir, 'timestamp.json', { ...ts, version: 1000 }, [w.keys.timestamp]);
  t.equal((await w.client.refresh()).versions.timestamp, 1000);
  writeFileSync(join(w.repoDir, 'timestamp.json'), real);
  // The operator rotates the timestamp key and publishes normally (timestamp v2 < 1000).
  const { generateKey, publicOf } = await import('../../../../runtime/trust/index.js');
  const fresh = generateKey();
  await w.repo.replaceRoleKeys({ role: 'timestamp', revoke: [w.keys.timestamp.keyid], add: [publicOf(fresh)], rootKeys: [w.keys.root] });
  await w.repo.publish({ targetsKey: w.keys.targets, snapshotKey: w.keys.snapshot, timestampKey: fresh });
  const recovered = await w.client.refresh();
  t.same([recovered.versions.root, recovered.versions.timestamp], [2, 2]);
});

t.test('fast-forward recovery: rotating the snapshot key also drops the trusted targets, whose version floor came through it (tuf-conformance test_new_targets_fast_forward_recovery)', async (t) => {
  const w = await world(t);
  await w.client.refresh();
  // The snapshot and targets keys leak; the attacker fast-forwards the device to targets v1000.
  const targets = readSigned(w.repoDir, 'targets.json');
  const snapshot = readSigned(w.repoDir, 'snapshot.json') as { version: number };
  const timestamp = readSigned(w.repoDir, 'timestamp.json') as { version: number };
  forge(w.repoDir, 'targets.json', { ...targets, version: 1000 }, [w.keys.targets]);
  forge(w.repoDir, 'snapshot.json', { ...snapshot, version: snapshot.version + 1, meta: { 'targets.json': { version: 1000 } } }, [w.keys.snapshot]);
  forge(w.repoDir, 'timestamp.json', { ...timestamp, version: timestamp.version + 1, meta: { 'snapshot.json': { version: snapshot.version + 1 } } }, [w.keys.timestamp]);
  t.equal((await w.client.refresh()).versions.targets, 1000);
  // The operator rotates the snapshot key and publishes normally: targets far below v1000.
  const { generateKey, publicOf } = await import('../../../../runtime/trust/index.js');
  const fresh = generateKey();
  await w.repo.replaceRoleKeys({ role: 'snapshot', revoke: [w.keys.snapshot.keyid], add: [publicOf(fresh)], rootKeys: [w.keys.root] });
  await w.repo.publish({ targetsKey: w.keys.targets, snapshotKey: fresh, timestampKey: w.keys.timestamp });
  const recovered = await w.client.refresh();
  t.equal(recovered.versions.root, 2);
  t.ok(recovered.versions.targets < 1000, `recovered to the repository's targets v${recovered.versions.targets}`);
});

t.test('consistent snapshots: a root that turns them on is followed (N.snapshot.json, N.targets.json; target files under their hash)', async (t) => {
  const w = await world(t);
  const r1 = releaseTarget(1, commitA, commitB);
  w.repo.addTarget(r1.name, r1.file);
  w.repo.addTarget(`deltas/${commitB}-${commitA}`, { length: 3, hashes: { sha256: 'e'.repeat(64) }, custom: { kind: 'ostree-static-delta', from: commitB, to: commitA } });
  w.repo.addTarget('files/only-sha512.txt', { length: 3, hashes: { sha512: 'f'.repeat(128) } });
  w.repo.addTarget('files/both.txt', { length: 3, hashes: { sha512: 'f'.repeat(128), sha256: 'e'.repeat(64) } });
  await w.publish();
  const root = readSigned(w.repoDir, 'root.json') as { version: number };
  forge(w.repoDir, `${root.version + 1}.root.json`, { ...root, version: root.version + 1, consistent_snapshot: true }, [w.keys.root]);
  const snapshot = readSigned(w.repoDir, 'snapshot.json') as { version: number; meta: Record<string, { version: number }> };
  const targetsVersion = snapshot.meta['targets.json']?.version ?? 0;
  renameSync(join(w.repoDir, 'snapshot.json'), join(w.repoDir, `${snapshot.version}.snapshot.json`));
  renameSync(join(w.repoDir, 'targets.json'), join(w.repoDir, `${targetsVersion}.targets.json`));
  w.fetcher.requests.length = 0;
  const trusted = await w.client.refresh();
  t.same(w.fetcher.requests.filter((p) => !p.endsWith('root.json')), ['timestamp.json', `${snapshot.version}.snapshot.json`, `${targetsVersion}.targets.json`]);
  const delta = trusted.get(`deltas/${commitB}-${commitA}`);
  t.ok(delta);
  if (delta) t.equal(trusted.filePath(delta), `deltas/${'e'.repeat(64)}.${commitB}-${commitA}`, 'a target file is fetched under its hash');
  // §5.7.3: under one of the hashes the target lists, whichever it is (tuf-conformance test_download_with_hash_algorithms[hashes1]); sha256 when listed.
  const only512 = trusted.get('files/only-sha512.txt');
  const both = trusted.get('files/both.txt');
  t.equal(only512 && trusted.filePath(only512), `files/${'f'.repeat(128)}.only-sha512.txt`, 'a target without sha256 is fetched under the hash it lists');
  t.equal(both && trusted.filePath(both), `files/${'e'.repeat(64)}.both.txt`, 'sha256 is preferred when listed');
});

t.test('bad bytes: oversize, not JSON, wrong type, missing files, fetch errors', async (t) => {
  const w = await world(t);
  w.fetcher.overrides.set('timestamp.json', new Uint8Array(20_000).fill(0x20));
  await rejects(t, w.client.refresh(), 'UPDATE_METADATA_INVALID', /timestamp\.json: larger than the 16384 bytes allowed for timestamp metadata \(reading stopped after 16385\)/);
  w.fetcher.overrides.set('timestamp.json', new TextEncoder().encode('{"signed": '));
  await rejects(t, w.client.refresh(), 'UPDATE_METADATA_INVALID', /timestamp\.json: not UTF-8 JSON/);
  w.fetcher.overrides.set('timestamp.json', new Uint8Array(readFileSync(join(w.repoDir, 'snapshot.json'))));
  await rejects(t, w.client.refresh(), 'UPDATE_METADATA_INVALID', /expected timestamp metadata, got _type "snapshot"/);
  w.fetcher.overrides.set('timestamp.json', new TextEncoder().encode(JSON.stringify({ signatures: [], signed: { _type: 'timestamp', version: 1.5 } })));
  await rejects(t, w.client.refresh(), 'UPDATE_METADATA_INVALID', /invalid timestamp metadata: .*spec_version/);
  w.fetcher.overrides.set('timestamp.json', new Error('connect ECONNREFUSED'));
  const message = await rejects(t, w.client.refresh(), 'UPDATE_UNAVAILABLE', /cannot fetch timestamp\.json .*ECONNREFUSED/);
  t.ok(message);
  w.fetcher.overrides.clear();
  w.fetcher.dir = join(w.repoDir, 'nowhere');
  const err = await w.client.refresh().catch((e: unknown) => e);
  t.ok(isOutpostError(err, 'UPDATE_UNAVAILABLE') && err.transient, 'a missing repository is transient');
  t.same(await trustedState(w.store), {}, 'nothing trusted was written');
});

t.test('an initial root that does not verify itself is refused', async (t) => {
  const w = await world(t);
  const { TufClient } = await import('../../../../runtime/update/tuf/index.js');
  const { silentLogger } = await import('../../../../runtime/logs/index.js');
  const env = JSON.parse(new TextDecoder().decode(w.initialRoot)) as { signed: object };
  const unsigned = new TextEncoder().encode(JSON.stringify({ signatures: [], signed: env.signed }));
  const client = new TufClient({ store: w.store, fetcher: w.fetcher, initialRoot: unsigned, now: w.clock.now, log: silentLogger });
  await rejects(t, client.refresh(), 'UPDATE_SIGNATURE', /initial root\.json: no valid signature by a root key of itself/);
});

t.test('stored(): what the store trusts, offline, expired or not; nothing before the first refresh', async (t) => {
  const w = await world(t);
  t.equal(await w.client.stored(), undefined, 'nothing refreshed yet');
  t.equal(await w.client.notEarlierThan(), undefined);
  const r1 = releaseTarget(1, commitA);
  w.repo.addTarget(r1.name, r1.file);
  await w.publish();
  w.clock.set(HOUR);
  await w.client.refresh();
  // Long past every expiry, with the repository gone: the stored targets are still what was verified.
  w.clock.set(400 * DAY);
  w.fetcher.requests.length = 0;
  const stored = await w.client.stored();
  t.same(stored?.get(r1.name), { name: r1.name, ...r1.file });
  t.equal(stored?.versions.targets, 2);
  t.equal(stored?.referenceTime.getTime(), T0.getTime() + HOUR, 'judged at the last trusted time, not the wall clock');
  t.equal((await w.client.notEarlierThan())?.getTime(), T0.getTime() + HOUR);
  t.same(w.fetcher.requests, [], 'nothing fetched');
});
