/**
 * The agent/installer split on real processes: `outpost run` reaches ostree and the bootloader
 * only through `outpost installer` on its socket; the installer re-checks the signed metadata
 * before a deploy and reads files only from the agent's state dir.
 */
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { installerCall } from '../../../runtime/installer/index.js';
import { setTimeout } from 'node:timers/promises';
import { Store } from '../../../runtime/store/index.js';
import { readPrivateKeyFile } from '../../../runtime/trust/index.js';
import { openRepository } from '../../../runtime/update/tuf/writer.js';
import { TUF_COLLECTION } from '../../../runtime/update/tuf/index.js';
import { z } from 'zod';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';

const probation = { probation: { windowSec: 3, intervalSec: 1 } };

/** A world per test: each device deploys into the world's one sysroot. */
async function world(t: Test): Promise<OtaWorld> {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  await ota.release(2, { deltaFrom: [1] });
  return ota;
}

t.test('an update runs through the installer: every ostree and boot step is a logged request; no downgrade by deploy', async (t) => {
  const ota = await world(t);
  await ota.release(3, { deltaFrom: [1] });
  const device = otaDevice(ota, probation, { split: {} });
  t.teardown(device.cleanup);
  // The installer's own metadata store, damaged as a power cut while LevelDB wrote it left it on
  // the booted gateway: repaired with a copy kept, not a refusal of every deploy from then on.
  // What repair gives back still holds a record this release cannot read (as a newer release may
  // leave it after a rollback): the store is set aside and rebuilt from the image's root.
  const gateStore = join(device.world.dir, 'installer-state', 'tuf');
  const damaged = await Store.open({ location: gateStore, version: 1 });
  await damaged.batch().put(damaged.collection(TUF_COLLECTION, z.unknown()), 'root', { format: 2, signed: 'elsewhere' }).commit();
  await damaged.close();
  for (const f of await readdir(gateStore)) if (f.startsWith('MANIFEST')) await writeFile(join(gateStore, f), 'garbage');
  await device.boot();
  t.equal((await device.cli(['update', 'apply'])).exitCode, 0);
  const status = await device.converge(6);
  t.match(status.last, { result: 'committed', version: 3, commit: ota.ostree.commit(3) });
  t.ok((await readdir(join(device.world.dir, 'installer-state'))).some((f) => f.startsWith('tuf.corrupt-')), 'a copy of the damaged store kept');
  const rebuilt = await Store.open({ location: gateStore, version: 1 });
  t.equal(await rebuilt.collection(TUF_COLLECTION, z.unknown()).get('root'), undefined, 'the unreadable record is gone: the store was set aside and rebuilt');
  await rebuilt.close();
  // Release 2 is still signed; a compromised agent asking for it meets the installer's floor: the running release.
  const { daemon } = await device.boot();
  const { installer } = JSON.parse(await readFile(device.world.configPath, 'utf8')) as { installer: { socket: string } };
  await t.rejects(installerCall(installer.socket, { op: 'deploy', commit: ota.ostree.commit(2) }), { code: 'INSTALLER_REFUSED', message: /release 2 is older than release 3, which this device runs/ }, 'no downgrade by deploy');
  daemon.kill('SIGTERM');
  await daemon;
  t.match(await device.adminStatus(), new RegExp(`^\\s*\\*? ?\\S+ ${ota.ostree.commit(3)}`), 'v3 still the default');
  const log = device.installer()?.all ?? '';
  device.installer()?.kill('SIGTERM');
  const stopped = await device.installer();
  t.equal(stopped?.exitCode, 0, 'the installer stops cleanly on SIGTERM');
  const requests = stopped?.all?.split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => (JSON.parse(l) as { op: string }).op) ?? [];
  for (const op of ['applyStaticDelta', 'boot.markTrial', 'deploy', 'boot.reboot', 'boot.markGood']) t.ok(requests.includes(op), `the installer logged ${op}`, { requests });
  t.match(stopped?.all ?? log, /deploy checked against the signed metadata/, 'the deploy was checked against the signed metadata');
});

t.test('the installer refuses what the signed metadata does not name, and paths outside the agent', async (t) => {
  const ota = await world(t);
  await ota.release(3, { deltaFrom: [1] });
  const device = otaDevice(ota, probation, { split: {} });
  t.teardown(device.cleanup);
  // The config overlay in the agent's state dir is the agent's to write: the installer reads only
  // the image's config, or the agent would pick the hardware class it checks (or its root of trust,
  // or its store): the refusal below still names the image's gw-demo.
  await mkdir(device.world.stateDir, { recursive: true });
  await writeFile(join(device.world.stateDir, 'config.json'), JSON.stringify({ update: { hardware: 'chosen-by-the-agent' } }));
  const { daemon } = await device.boot();
  t.teardown(async () => {
    daemon.kill('SIGTERM');
    await daemon;
  });
  const config = JSON.parse(await readFile(device.world.configPath, 'utf8')) as { installer: { socket: string } };
  const socket = config.installer.socket;
  // The agent verified the metadata once (a check), so its export exists.
  t.equal((await device.cli(['update', 'check'])).exitCode, 0);
  const v3 = ota.ostree.commit(3);
  const stranger = 'f'.repeat(64);
  // A compromised agent rewrites its export: the installer's own walk from the image's root refuses it.
  const exportDir = join(device.world.stateDir, 'trusted-metadata');
  const good = await readFile(join(exportDir, 'targets.json'), 'utf8');
  const targets = JSON.parse(good) as { signed: { targets: Record<string, { custom?: { commit?: string } }> } };
  for (const target of Object.values(targets.signed.targets)) if (target.custom?.commit === v3) target.custom.commit = stranger;
  await writeFile(join(exportDir, 'targets.json'), JSON.stringify(targets));
  await t.rejects(installerCall(socket, { op: 'deploy', commit: stranger }), { code: 'INSTALLER_REFUSED', message: /does not verify/ }, 'tampered metadata does not verify');
  await writeFile(join(exportDir, 'targets.json'), good);
  await t.rejects(installerCall(socket, { op: 'deploy', commit: stranger }), { code: 'INSTALLER_REFUSED', message: /no release for gw-demo\/x86_64 .* names it/ }, 'an unsigned commit is not deployed');
  // Once verified, the installer judges by its own trusted copy: a rewrite at the same version changes nothing.
  await writeFile(join(exportDir, 'targets.json'), JSON.stringify(targets));
  await t.rejects(installerCall(socket, { op: 'deploy', commit: stranger }), { code: 'INSTALLER_REFUSED', message: /names it/ }, 'still refused from the trusted copy');

  await writeFile(join(device.world.dir, 'outside.delta'), 'x');
  await t.rejects(installerCall(socket, { op: 'applyStaticDelta', file: join(device.world.dir, 'outside.delta') }), { code: 'INSTALLER_REFUSED', message: /outside the agent's state dir/ });
  await symlink('/etc/passwd', join(device.world.stateDir, 'link.delta'));
  await t.rejects(installerCall(socket, { op: 'applyStaticDelta', file: join(device.world.stateDir, 'link.delta') }), { code: 'INSTALLER_REFUSED', message: /outside the agent's state dir/ }, 'a link out of the state dir is followed and refused');
  await t.rejects(installerCall(socket, { op: 'pull', url: 'http://example.invalid/repo', refOrCommit: v3 }), { code: 'INSTALLER_REFUSED', message: /only a repository in the agent's state dir \(a file URL\); the installer has no network/ });
  await t.rejects(installerCall(socket, { op: 'pull', url: 'file:///etc', refOrCommit: v3 }), { code: 'INSTALLER_REFUSED', message: /outside the agent's state dir/ });
  // An option in place of the commit would reach `ostree pull` (e.g. --localcache-repo=<the agent's own objects>).
  await t.rejects(installerCall(socket, { op: 'pull', url: 'file:///etc', refOrCommit: `--localcache-repo=${device.world.stateDir}` }), { code: 'INSTALLER_REFUSED', message: /refOrCommit: must be a 64-hex-digit OSTree commit/ });
  // The export is the agent's: a link in it to a file the agent may not read is not followed, and nothing of that file comes back.
  const secret = join(device.world.dir, 'root-only');
  await writeFile(secret, 'SECRET-CONTENT', { mode: 0o600 });
  await rm(join(exportDir, 'timestamp.json'));
  await symlink(secret, join(exportDir, 'timestamp.json'));
  const linked = await installerCall(socket, { op: 'deploy', commit: v3 }).then(() => undefined, (err: Error) => err);
  t.match(linked, { code: 'INSTALLER_REFUSED', message: /does not verify \(INSTALLER_REFUSED;/ }, 'a link in the export is refused');
  t.notMatch(linked?.message ?? '', /SECRET/, 'without a word of what it points to');
  // Requests outside the typed set never reach a handler.
  await t.rejects(installerCall(socket, { op: 'refUpdate', ref: 'ostree/0/1/0', commit: null } as never), { code: 'INSTALLER_REFUSED', message: /ref: must be a ref below outpost\// });
  await t.rejects(installerCall(socket, { op: 'exec', argv: ['sh'] } as never), { code: 'INSTALLER_REFUSED', message: /not an installer request/ });
  t.match(await device.adminStatus(), new RegExp(`^\\s*\\*? ?\\S+ ${ota.ostree.commit(1)}`), 'v1 is still the only deployment');
  t.notMatch(await device.adminStatus(), /f{64}/);
});

t.test('a kill -9 of the installer after each step of the update, before the agent heard: the agent resumes each and commits', async (t) => {
  const ota = await world(t);
  const cuts = ['applyStaticDelta', 'refUpdate', 'boot.markTrial', 'deploy', 'boot.markGood'];
  const device = otaDevice(ota, probation, { split: { installerEnv: { OUTPOST_FAULT_KILL_AFTER_OP: cuts.join(',') } } });
  t.teardown(device.cleanup);
  let applied = false;
  let kills = 0;
  // Each boot starts the installer again (socket activation would, at the next request); a
  // daemon whose installer died is stopped and started again, as a resume from any state must work.
  for (let boots = 0; boots < 16; boots++) {
    const { daemon } = await device.boot();
    const installer = device.installer();
    if (!applied) {
      t.equal((await device.cli(['update', 'apply'])).exitCode, 0);
      applied = true;
    }
    const settled = await until('the installer killed, a reboot, or the update settled', async () => {
      if (installer && (installer.exitCode !== null || installer.signalCode !== null)) return 'killed';
      if (daemon.exitCode !== null || daemon.signalCode !== null) return 'rebooted';
      const s = await device.status().catch(() => undefined);
      return s?.state === 'idle' && s.last ? 'idle' : undefined;
    }, 60_000);
    if (settled === 'killed') kills++;
    daemon.kill('SIGTERM');
    await daemon;
    if (settled === 'idle') break;
  }
  t.same((await readdir(join(device.world.dir, 'installer-state', 'fault-fired'))).sort(), [...cuts].sort(), 'the installer was killed after each of these steps');
  t.equal(kills, cuts.length);
  const status = await device.converge(2);
  t.match(status.last, { result: 'committed', version: 2 });
  const deployments = (await device.adminStatus()).split('\n').filter((l) => /^\s*\*?\s*\S+ [0-9a-f]{64}\.\d/.test(l));
  t.equal(deployments.length, 2, 'one deployment of v2 beside v1: the resumed deploy did not deploy again', { deployments });
});

t.test('root versions the agent trusted before it exported them are fetched again, so the installer can walk the chain', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  const keys = ota.keysDir;
  // Two root versions, each replacing the targets key: root v1 alone cannot verify the targets any more.
  for (const next of ['targets-2', 'targets-3']) {
    const root = JSON.parse(await readFile(join(ota.tufDir, 'root.json'), 'utf8')) as { signed: { roles: { targets: { keyids: string[] } } } };
    await ota.ctl(['keys', 'generate', '--role', 'targets', '--name', next, '--out', keys]);
    await ota.ctl(['repo', 'revoke-key', ota.tufDir, '--role', 'targets', '--key-id', root.signed.roles.targets.keyids[0] ?? '', '--new-key', join(keys, `${next}.key`), '--root-key', join(keys, 'root.key'), '--snapshot-key', join(keys, 'snapshot.key'), '--timestamp-key', join(keys, 'timestamp.key')]);
  }
  for (const ext of ['key', 'pub']) await writeFile(join(keys, `targets.${ext}`), await readFile(join(keys, `targets-3.${ext}`)));
  await ota.release(2, { deltaFrom: [1] });
  const device = otaDevice(ota, probation, { split: {} });
  t.teardown(device.cleanup);
  const { daemon } = await device.boot();
  t.equal((await device.cli(['update', 'check'])).exitCode, 0);
  // As on a device that trusted root v2 before this release exported anything.
  const link = join(device.world.stateDir, 'trusted-metadata', '2.root.json');
  await rm(link);
  t.equal((await device.cli(['update', 'apply'])).exitCode, 0);
  t.ok(await readFile(link).then(() => true, () => false), '2.root.json is in the export again');
  // Stopped wherever it is (a stop resumes like a crash); converge boots it until the update settles.
  daemon.kill('SIGTERM');
  await daemon;
  const status = await device.converge(6);
  t.match(status.last, { result: 'committed', version: 2 }, 'the installer walked root v1 → v3 and deployed');
});

t.test('the full pull: the agent fetches the commit into a repository of its own, the installer (no network) pulls from there', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  await ota.release(2, { deltaFrom: [] });
  const device = otaDevice(ota, probation, { split: {} });
  t.teardown(device.cleanup);
  const { daemon } = await device.boot();
  const objectsBefore = ota.ostree.server.requests.filter((r) => r.path.includes('/objects/')).length;
  t.equal((await device.cli(['update', 'apply'])).exitCode, 0);
  await daemon;
  const status = await device.converge(6);
  t.match(status.last, { result: 'committed', version: 2, commit: ota.ostree.commit(2) });
  t.ok(ota.ostree.server.requests.filter((r) => r.path.includes('/objects/')).length > objectsBefore, 'the objects came over HTTP');
  device.installer()?.kill('SIGTERM');
  const pulls = ((await device.installer())?.all ?? '').split('\n').filter((l) => l.includes('"msg":"request"') && l.includes('"op":"pull"'));
  t.equal(pulls.length, 1, 'one pull request reached the installer');
  t.match(pulls[0], new RegExp(`"url":"file://${join(device.world.stateDir, 'pull-repo')}"`), 'naming the agent\'s repository, not the network');
  t.same(await readdir(join(device.world.stateDir, 'pull-repo')), [], 'emptied once the update settled');
});

t.test('metadata that expired between the download and the deploy is refreshed before the deploy, not refused', async (t) => {
  const ota = await world(t);
  const repo = await openRepository(ota.tufDir);
  const timestampKey = await readPrivateKeyFile(join(ota.keysDir, 'timestamp.key'));
  // A short-lived timestamp stands in for a download that outlasted the usual day.
  const lifeMs = 20_000;
  await repo.refresh({ timestampKey, expiresMs: { timestamp: lifeMs } });
  const signedAt = Date.now();
  const device = otaDevice(ota, probation, { split: {} });
  t.teardown(device.cleanup);
  const { daemon } = await device.boot({ OUTPOST_FAULT_KILL_AT_STATE: 'downloaded' });
  await device.cli(['update', 'apply']);
  t.equal((await daemon).signal, 'SIGKILL', 'stopped once the release was downloaded');
  await setTimeout(Math.max(0, signedAt + lifeMs + 2000 - Date.now()));
  // The repository re-signs its timestamp as a timer would; the exported copy is now expired.
  await repo.refresh({ timestampKey });
  const status = await device.converge(6);
  t.match(status.last, { result: 'committed', version: 2 }, 'the agent refreshed the metadata and the installer deployed');
});
