import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isOutpostError } from '../../../../runtime/errors.js';
import { openRepository, parseDurationMs, parseRelease, releaseCustomSchema, releasesFor, type TargetInfo } from '../../../../runtime/update/tuf/index.js';
import { DAY, HOUR, T0, readSigned, releaseTarget, world } from './fixture.js';

const code = async (p: Promise<unknown> | (() => unknown)): Promise<string | undefined> => {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    return isOutpostError(err) ? err.code : String(err);
  }
  return undefined;
};

t.test('default expiries per role, overridable per publish', async (t) => {
  const w = await world(t);
  const at = (ms: number) => new Date(T0.getTime() + ms).toISOString().replace('.000Z', 'Z');
  t.equal(readSigned(w.repoDir, 'root.json').expires, at(365 * DAY));
  t.equal(readSigned(w.repoDir, 'targets.json').expires, at(90 * DAY));
  t.equal(readSigned(w.repoDir, 'snapshot.json').expires, at(7 * DAY));
  t.equal(readSigned(w.repoDir, 'timestamp.json').expires, at(DAY));
  t.equal(readSigned(w.repoDir, 'root.json').consistent_snapshot, false);
  w.clock.set(HOUR);
  await w.publish(w.repo, { targets: parseDurationMs('30d'), timestamp: parseDurationMs('6h') });
  t.equal(readSigned(w.repoDir, 'targets.json').expires, at(HOUR + 30 * DAY));
  t.equal(readSigned(w.repoDir, 'timestamp.json').expires, at(7 * HOUR));
  t.same(w.repo.versions, { root: 1, timestamp: 2, snapshot: 2, targets: 2 });
  t.notOk(readdirSync(w.repoDir).some((f) => f.endsWith('.tmp')), 'no temporary files left');
});

t.test('refresh re-signs only the online roles', async (t) => {
  const w = await world(t);
  t.same(await w.repo.refresh({ timestampKey: w.keys.timestamp }), { targets: 1, snapshot: 1, timestamp: 2 });
  t.same(await w.repo.refresh({ timestampKey: w.keys.timestamp, snapshotKey: w.keys.snapshot }), { targets: 1, snapshot: 2, timestamp: 3 });
  t.equal(await code(w.repo.refresh({ timestampKey: w.keys.snapshot })), 'UPDATE_SIGNATURE', 'a key of another role is refused');
  t.equal((await w.client.refresh()).versions.timestamp, 3);
});

t.test('targets: validation, removal, copies, reopening', async (t) => {
  const w = await world(t);
  const good = releaseTarget(1, 'a'.repeat(64));
  const bad: [string, unknown][] = [
    ['../etc/passwd', good.file],
    ['/abs', good.file],
    ['a//b', good.file],
    ['a/./b', good.file],
    ['ok', { ...good.file, length: -1 }],
    ['ok', { ...good.file, hashes: {} }],
    ['ok', { ...good.file, hashes: { sha256: 'XYZ' } }],
    ['ok', { ...good.file, custom: { ratio: 0.5 } }],
    ['ok', { ...good.file, custom: { missing: undefined } }],
  ];
  for (const [name, file] of bad) t.equal(await code(() => w.repo.addTarget(name, file as typeof good.file)), 'USAGE', `${name} ${JSON.stringify(file)}`);
  w.repo.addTarget(good.name, good.file);
  const copy = w.repo.getTarget(good.name);
  if (copy?.custom) copy.custom.ref = 'changed';
  t.equal(w.repo.getTarget(good.name)?.custom?.ref, good.file.custom.ref, 'returned targets are copies');
  t.equal(w.repo.targetPath(good.name), join(w.repoDir, 'targets', 'releases', 'gw-1', 'aarch64', '1'));
  await w.publish();
  const reopened = await openRepository(w.repoDir, { now: w.clock.now });
  t.same(reopened.listTargets(), [{ name: good.name, file: good.file }]);
  t.same(reopened.versions, w.repo.versions);
  t.ok(reopened.removeTarget(good.name));
  t.notOk(reopened.removeTarget(good.name));
  await reopened.publish({ targetsKey: w.keys.targets, snapshotKey: w.keys.snapshot, timestampKey: w.keys.timestamp });
  t.same((await w.client.refresh()).list(), []);
  t.equal(await code(openRepository(join(w.repoDir, 'missing'))), 'UPDATE_METADATA_INVALID');
});

t.test('durations', async (t) => {
  t.equal(parseDurationMs('90d'), 90 * DAY);
  t.equal(parseDurationMs('12h'), 12 * HOUR);
  t.equal(parseDurationMs('30m'), 30 * 60_000);
  t.equal(parseDurationMs('45s'), 45_000);
  for (const bad of ['', '0d', '1.5d', '-1d', '10', 'd', '1w']) t.equal(await code(() => parseDurationMs(bad)), 'USAGE', bad);
});

t.test('release conventions: name, hash and custom fields must agree', async (t) => {
  const commit = 'a'.repeat(64);
  const info = (name: string, file: { length: number; hashes: Record<string, string>; custom?: Record<string, unknown> }): TargetInfo => ({ name, length: file.length, hashes: file.hashes, custom: file.custom ?? {} });
  const r = releaseTarget(4, commit, 'b'.repeat(64));
  t.ok(parseRelease(info(r.name, r.file)).ok);
  t.match(parseRelease(info('releases/gw-1/aarch64/5', r.file)), { ok: false, reason: /custom fields describe releases\/gw-1\/aarch64\/4/ });
  t.match(parseRelease(info(r.name, { ...r.file, hashes: { sha256: 'c'.repeat(64) } })), { ok: false, reason: /hashes\.sha256 is not custom\.commit/ });
  t.match(parseRelease(info(r.name, { ...r.file, custom: { ...r.file.custom, arch: 'arm' } })), { ok: false, reason: /arch/ });
  t.notOk(releaseCustomSchema.safeParse({ ...r.file.custom, version: 0 }).success, 'version is a positive integer');
  t.notOk(releaseCustomSchema.safeParse({ ...r.file.custom, hardware: '../x' }).success);
  const list = [releaseTarget(2, commit), releaseTarget(10, commit), releaseTarget(3, commit)].map((x) => info(x.name, x.file));
  list.push(info('releases/gw-1/aarch64/7', { length: 0, hashes: { sha256: commit }, custom: { bogus: true } }));
  t.same(releasesFor(list, 'gw-1', 'aarch64').map((x) => x.custom.version), [10, 3, 2], 'highest first, malformed ones skipped');
  t.same(releasesFor(list, 'gw-1', 'x86_64'), []);
});
