/**
 * The contract of the `Ostree` port, run against the real adapter (the ostree CLI on a temp repo
 * and sysroot) and against the in-memory fake the state-machine unit tests use: what the machine
 * relies on must hold for both, or the fake's tests prove nothing.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Ostree } from '../../../runtime/update/ostree.js';
import { createOstreeWorld } from '../../../scripts/world/ostree-world.js';
import { fakeOstree } from '../../fixtures/fake-ostree.js';

/** An adapter on a system with v1 deployed and booted, and v2 reachable through a delta file. */
interface Fixture {
  ostree: Ostree;
  v1: string;
  v2: string;
  delta: string;
  corruptDelta: string;
  /** Which commit the (simulated) bootloader started. */
  boot(commit: string): void;
}

async function real(t: Test): Promise<Fixture> {
  const w = await createOstreeWorld();
  t.teardown(() => w.close());
  let booted = w.commit(1);
  const corruptDelta = join(w.dir, 'corrupt.delta');
  await writeFile(corruptDelta, Buffer.alloc(4096, 7));
  return {
    ostree: w.ostree({ bootedHint: async () => ({ commit: booted }) }),
    v1: w.commit(1),
    v2: w.commit(2),
    delta: (await w.delta(1, 2)).file,
    corruptDelta,
    boot: (commit) => void (booted = commit),
  };
}

async function fake(): Promise<Fixture> {
  const [v1, v2] = ['1'.repeat(64), '2'.repeat(64)];
  let booted = v1;
  return { ostree: fakeOstree(v1, async () => booted), v1, v2, delta: '/fake/v1-v2.delta', corruptDelta: '/fake/corrupt.delta', boot: (commit) => void (booted = commit) };
}

const order = async (o: Ostree) => (await o.deployments()).map((d) => d.commit);

for (const [name, make] of [['real ostree', real], ['fake', fake]] as const) {
  t.test(`${name}: the Ostree contract the update machine relies on`, async (t) => {
    const f = await make(t);
    const { ostree, v1, v2 } = f;
    t.same(await order(ostree), [v1], 'v1 deployed');
    t.equal(await ostree.bootedCommit(), v1);
    t.notOk(await ostree.hasCommit(v2), 'v2 not in the repo yet');
    await t.rejects(ostree.verifyCommit(v2), { code: 'OSTREE_FAILED' }, 'verifying a missing commit fails');

    await t.rejects(ostree.applyStaticDelta(f.corruptDelta, { expectCommit: v2 }), { code: 'OSTREE_FAILED' }, 'a corrupt delta fails');
    t.notOk(await ostree.hasCommit(v2), 'and leaves no commit');
    await ostree.applyStaticDelta(f.delta, { expectFrom: v1, expectCommit: v2 });
    t.ok(await ostree.hasCommit(v2), 'the delta brings v2');
    await ostree.verifyCommit(v2);

    const boot0 = await ostree.bootVersion();
    const deployed = await ostree.deploy(v2);
    t.match(deployed, { commit: v2, isDefault: true, index: 0 }, 'deploy resolves to the new default');
    t.same(await order(ostree), [v2, v1], 'v2 default, the booted v1 kept as the fallback');
    t.equal(await ostree.bootVersion(), boot0 === 0 ? 1 : 0, 'every change of the deployment list writes the other boot config');
    t.equal(await ostree.bootedCommit(), v1, 'still booted: v1');

    await ostree.undeploy(0);
    t.same(await order(ostree), [v1], 'undeploying the pending v2 leaves v1');
    t.equal(await ostree.bootVersion(), boot0, 'and swaps the boot config back');
    t.notOk(await ostree.hasCommit(v2), 'and prunes v2: nothing references it');

    // The machine pins what it stages: a ref keeps the commit through deploys and undeploys.
    await ostree.applyStaticDelta(f.delta, { expectFrom: v1, expectCommit: v2 });
    await ostree.refUpdate('outpost/staged', v2);
    await ostree.deploy(v2);
    await ostree.undeploy(0);
    t.ok(await ostree.hasCommit(v2), 'a pinned commit survives the undeploy');
    await ostree.deploy(v2);
    f.boot(v2);
    t.equal(await ostree.bootedCommit(), v2, 'booted into v2');
    t.match(await ostree.deployments(), [{ commit: v2, current: true }, { commit: v1, rollback: true }], 'v1 is the rollback');
    const back = await ostree.rollback();
    t.match(back, { commit: v1, isDefault: true }, 'rollback makes v1 the default again');
    t.equal((await order(ostree))[0], v1);
    await ostree.refUpdate('outpost', null);
  });
}
