import t from 'tap';
import { selectRelease, type DeviceFacts } from '../../../runtime/update/select.js';
import { TrustedTargets, type TargetsSigned } from '../../../runtime/update/tuf/index.js';

const c = (n: number) => String(n).repeat(64).slice(0, 64);
const release = (hardware: string, arch: string, version: number, deltasFrom: number[] = []) => ({
  [`releases/${hardware}/${arch}/${version}`]: {
    length: 0,
    hashes: { sha256: c(version) },
    custom: { ref: 'os/stable', commit: c(version), arch, hardware, version, deltas: deltasFrom.map((f) => ({ from: c(f), target: `deltas/${c(f)}-${c(version)}` })) },
  },
});
const delta = (from: number, to: number) => ({
  [`deltas/${c(from)}-${c(to)}`]: { length: 1234, hashes: { sha256: 'd'.repeat(64) }, custom: { kind: 'ostree-static-delta', from: c(from), to: c(to) } },
});

function targets(files: Record<string, unknown>): TrustedTargets {
  const signed = { _type: 'targets', spec_version: '1.0.31', version: 1, expires: '2099-01-01T00:00:00Z', targets: files } as unknown as TargetsSigned;
  return new TrustedTargets(signed, { root: 1, timestamp: 1, snapshot: 1, targets: 1 }, new Date());
}

const facts = (overrides: Partial<DeviceFacts> = {}): DeviceFacts => ({ hardware: 'gw', arch: 'x86_64', bootedCommit: c(1), installedVersion: 1, hasFailed: async () => false, deferredWait: async () => null, wasCancelled: async () => false, ...overrides });

t.test('picks the newest release for this hardware and arch, with the delta from the booted commit', async (t) => {
  const all = targets({ ...release('gw', 'x86_64', 2, [1]), ...delta(1, 2), ...release('gw', 'x86_64', 3, [2]), ...delta(2, 3), ...release('gw', 'aarch64', 9), ...release('other', 'x86_64', 8) });
  const s = await selectRelease(all, facts());
  t.match(s.release, { version: 3, commit: c(3), delta: null }, 'no delta from v1 to v3: full pull');
  const s2 = await selectRelease(all, facts({ bootedCommit: c(2), installedVersion: 2 }));
  t.match(s2.release, { version: 3, delta: { from: c(2), length: 1234, sha256: 'd'.repeat(64) } });
});

t.test('anti-rollback: a release not newer than the installed one is refused with the reason', async (t) => {
  const s = await selectRelease(targets(release('gw', 'x86_64', 4)), facts({ bootedCommit: c(5), installedVersion: 5 }));
  t.same(s, { release: null, reason: 'release 4 is not newer than installed release 5 (anti-rollback)' });
});

t.test('wrong architecture or class: nothing chosen, and the reason names this device', async (t) => {
  const s = await selectRelease(targets(release('gw', 'aarch64', 2)), facts());
  t.same(s, { release: null, reason: 'no release for hardware gw / x86_64 in the signed metadata' });
});

t.test('a release that failed its trial here is skipped, and the reason says so', async (t) => {
  const all = targets({ ...release('gw', 'x86_64', 2), ...release('gw', 'x86_64', 3) });
  const s = await selectRelease(all, facts({ hasFailed: async (commit) => commit === c(3) }));
  t.match(s.release, { version: 2 });
  const none = await selectRelease(all, facts({ bootedCommit: c(2), installedVersion: 2, hasFailed: async (commit) => commit === c(3) }));
  t.match(none, { release: null, reason: /release 3 failed its trial on this device and is not retried; release 2 is already running/ });
});

t.test('a bundle names its target: another class is refused even when the metadata has one for us', async (t) => {
  const all = targets({ ...release('gw', 'x86_64', 2), ...release('other', 'x86_64', 3) });
  t.match(await selectRelease(all, facts({ only: 'releases/other/x86_64/3' })), { release: null, reason: 'it is for other/x86_64, this device is gw/x86_64' });
  t.match((await selectRelease(all, facts({ only: 'releases/gw/x86_64/2' }))).release, { version: 2 });
});

t.test('a delta whose signed custom fields disagree with the release is not used', async (t) => {
  const bad = { [`deltas/${c(1)}-${c(2)}`]: { length: 1, hashes: { sha256: 'd'.repeat(64) }, custom: { kind: 'ostree-static-delta', from: c(1), to: c(7) } } };
  const s = await selectRelease(targets({ ...release('gw', 'x86_64', 2, [1]), ...bad }), facts());
  t.match(s.release, { version: 2, delta: null });
});

t.test('a release whose trial was cut short waits out its backoff; an older newer one may go first', async (t) => {
  const all = targets({ ...release('gw', 'x86_64', 2, [1]), ...release('gw', 'x86_64', 3, [1]) });
  const waiting = facts({ deferredWait: async (commit) => (commit === c(3) ? { reason: 'offered again in 10 min (trial 1 of 3 ended without a hang or a failed check)', leftMs: 540_000 } : null) });
  const choice = await selectRelease(all, waiting);
  t.equal(choice.release?.version, 2, 'release 2 meanwhile');
  const none = await selectRelease(all, { ...waiting, installedVersion: 2, bootedCommit: c(2) });
  t.equal(none.release, null);
  t.match(none, { reason: /release 3 is offered again in 10 min/, offerAgainInMs: 540_000 }, 'the status says when it comes back, and the scheduler how soon');
});

t.test('a signed release target that is malformed (a signer\'s mistake) is never installed, and the answer names it', async (t) => {
  const bad = release('gw', 'x86_64', 3);
  const badName = 'releases/gw/x86_64/3';
  (bad[badName] as { custom: Record<string, unknown> }).custom = { version: 3, hardware: 'gw' };
  const withGood = await selectRelease(targets({ ...release('gw', 'x86_64', 2), ...bad }), facts());
  t.equal(withGood.release?.version, 2, 'the well-formed release 2 is chosen');
  t.match(withGood, { skipped: [/skipped a malformed signed release: releases\/gw\/x86_64\/3: custom fields: /] });
  const alone = await selectRelease(targets(bad), facts());
  t.match(alone, { release: null, reason: /^skipped a malformed signed release: releases\/gw\/x86_64\/3: custom fields: .*; no release for hardware gw/ });
});

t.test('with consistent snapshots the delta is fetched from the path under its hash', async (t) => {
  const signed = { _type: 'targets', spec_version: '1.0.31', version: 1, expires: '2099-01-01T00:00:00Z', targets: { ...release('gw', 'x86_64', 2, [1]), ...delta(1, 2) } } as unknown as TargetsSigned;
  const consistent = new TrustedTargets(signed, { root: 1, timestamp: 1, snapshot: 1, targets: 1 }, new Date(), true);
  const s = await selectRelease(consistent, facts());
  t.match(s.release?.delta, { target: `deltas/${c(1)}-${c(2)}`, path: `deltas/${'d'.repeat(64)}.${c(1)}-${c(2)}` });
  t.notOk((await selectRelease(targets({ ...release('gw', 'x86_64', 2, [1]), ...delta(1, 2) }), facts())).release?.delta?.path, 'no path without them');
});
