import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice, type OtaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';
import { openRepository, TufClient } from '../../../runtime/update/tuf/index.js';
import { Store } from '../../../runtime/store/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { DirFetcher } from '../../unit/update/tuf/fixture.js';
import { readPrivateKeyFile } from '../../../runtime/trust/index.js';

async function world(t: Test): Promise<OtaWorld> {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  return ota;
}

function device(t: Test, ota: OtaWorld, update: Record<string, unknown> = {}): OtaDevice {
  const d = otaDevice(ota, update);
  t.teardown(d.cleanup);
  return d;
}

/** Boots, applies, and waits until the attempt settles in this boot (idle) or the daemon exits. */
async function applyOnce(d: OtaDevice, env: Record<string, string> = {}) {
  const { daemon } = await d.boot(env);
  const apply = await d.cli(['update', 'apply']);
  const settled = await until('the attempt to settle', async () => {
    if ((daemon.exitCode !== null || daemon.signalCode !== null)) return 'exited';
    const s = await d.status().catch(() => undefined);
    return s?.state === 'idle' ? 'idle' : undefined;
  });
  const status = settled === 'idle' ? await d.status() : undefined;
  daemon.kill('SIGTERM');
  const result = await daemon;
  return { apply, status, result };
}

/** The booted system is still v1 and nothing else is deployed. */
async function untouched(t: Test, ota: OtaWorld, d: OtaDevice): Promise<void> {
  const admin = await d.adminStatus();
  t.match(admin, new RegExp(`${ota.ostree.commit(1)}\\.0`), 'v1 still deployed');
  t.equal(admin.match(/[0-9a-f]{64}\.\d+/g)?.length, 1, 'nothing new deployed');
}

t.test('a tampered delta on the server is rejected by its signed sha256; v1 keeps running', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const deltaFile = join(ota.tufDir, 'targets', 'deltas', `${ota.ostree.commit(1)}-${ota.ostree.commit(2)}`);
  const bytes = readFileSync(deltaFile);
  bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 0xff, bytes.length >> 1);
  writeFileSync(deltaFile, bytes);
  const d = device(t, ota);
  const { status } = await applyOnce(d);
  t.match(status?.last, { result: 'failed', version: 2, code: 'DOWNLOAD_VERIFY', reason: /sha256 [0-9a-f]{64}, expected \d+ bytes with sha256/ });
  const { daemon } = await d.boot();
  t.match((await d.cli(['update', 'status'])).stdout, /last update: +release 2 failed at \S+ \(DOWNLOAD_VERIFY: /, 'the status names the error code');
  daemon.kill('SIGTERM');
  await daemon;
  await untouched(t, ota, d);
});

/** Replaces a target's file and signs its new length and hash, as a careless signer would. */
async function resignTarget(ota: OtaWorld, name: string, content: Buffer): Promise<void> {
  const repo = await openRepository(ota.tufDir);
  writeFileSync(repo.targetPath(name), content);
  const existing = repo.getTarget(name);
  repo.addTarget(name, { length: content.length, hashes: { sha256: createHash('sha256').update(content).digest('hex') }, custom: existing?.custom ?? {} });
  const key = (role: string) => readPrivateKeyFile(join(ota.keysDir, `${role}.key`));
  await repo.publish({ targetsKey: await key('targets'), snapshotKey: await key('snapshot'), timestampKey: await key('timestamp') });
}

t.test('a corrupt but correctly signed delta: no pull source → clean failure; with one → full pull fallback', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  await resignTarget(ota, `deltas/${ota.ostree.commit(1)}-${ota.ostree.commit(2)}`, Buffer.alloc(4096, 7));

  const isolated = device(t, ota, { ostreeUrl: undefined });
  const failed = await applyOnce(isolated);
  t.match(failed.status?.last, { result: 'failed', version: 2, reason: /static delta|OSTREE_FAILED|ostree/i });
  await untouched(t, ota, isolated);
  // Removed once the machine is idle, which the status can show a moment before: the daemon is
  // started again (as at any boot) and given the time to tidy.
  const { daemon: again } = await isolated.boot();
  const left = await until('the failed attempt\'s delta removed', async () => (readdirSync(join(isolated.world.stateDir, 'downloads')).length === 0 ? [] : undefined), 20_000).catch(() => readdirSync(join(isolated.world.stateDir, 'downloads')));
  again.kill('SIGTERM');
  await again;
  t.same(left, [], 'the failed attempt\'s delta does not stay on the disk');

  // With a bandwidth cap, which `ostree pull` cannot honour: the fallback says so.
  const withPull = device(t, ota, { bandwidthBytesPerSec: 100_000_000 });
  const before = ota.ostree.server.requests.length;
  const first = await applyOnce(withPull);
  t.equal(first.result.exitCode, 0, 'rebooted into v2 after the fallback pull');
  t.match(first.result.all, /the full pull is not bandwidth-capped/, 'the uncapped pull is logged');
  t.ok(ota.ostree.server.requests.slice(before).some((r) => r.path.includes('/repo/objects/')), 'objects were pulled');
  t.match(await withPull.adminStatus(), new RegExp(`${ota.ostree.commit(2)}\\.0`));
});

t.test('no release for this architecture: nothing is installed and the reason says why', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1], arch: 'aarch64' });
  const d = device(t, ota);
  const { daemon } = await d.boot();
  const check = await d.cli(['update', 'check']);
  t.equal(check.exitCode, 0);
  t.match(check.stdout, /nothing to install: no release for hardware gw-demo \/ x86_64/);
  daemon.kill('SIGTERM');
  await daemon;
  await untouched(t, ota, d);
});

t.test('not enough disk for download + apply: refused before any byte is fetched', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const d = device(t, ota, { applyHeadroomBytes: Number.MAX_SAFE_INTEGER });
  const before = ota.ostree.server.requests.length;
  const { status } = await applyOnce(d);
  t.match(status?.last, { result: 'failed', code: 'DISK_SPACE', reason: /free|space/i });
  t.notOk(ota.ostree.server.requests.slice(before).some((r) => r.path.includes('/deltas/')), 'no delta bytes fetched');
  await untouched(t, ota, d);
});

t.test('not enough disk for a full pull (no delta from the booted commit): refused before any object is fetched', async (t) => {
  const ota = await world(t);
  await ota.release(2);
  const d = device(t, ota, { applyHeadroomBytes: Number.MAX_SAFE_INTEGER });
  const before = ota.ostree.server.requests.length;
  const { status } = await applyOnce(d);
  t.match(status?.last, { result: 'failed', code: 'DISK_SPACE', reason: /for a full pull of release 2: \d+ bytes free, update\.applyHeadroomBytes asks for/ });
  t.notOk(ota.ostree.server.requests.slice(before).some((r) => r.path.includes('/objects/')), 'no object pulled');
  await untouched(t, ota, d);
});

t.test('expired metadata is refused with a clear reason (freeze attack)', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const repo = await openRepository(ota.tufDir);
  await repo.refresh({ timestampKey: await readPrivateKeyFile(join(ota.keysDir, 'timestamp.key')), expiresMs: { timestamp: 1 } });
  await new Promise((resolve) => setTimeout(resolve, 20));
  const d = device(t, ota);
  const { daemon } = await d.boot();
  const check = await d.cli(['update', 'check']);
  t.equal(check.exitCode, 65);
  t.match(check.stderr, /expired/);
  daemon.kill('SIGTERM');
  await daemon;
  await untouched(t, ota, d);
});

t.test('release bundle --expires: only the bundle\'s copy lives long, and a device that trusted it goes on with the served repository', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const bundle = join(ota.ostree.dir, 'shelf.bundle');
  await ota.ctl(['release', 'bundle', '--repo', ota.tufDir, '--target', 'releases/gw-demo/x86_64/2', '--out', bundle, '--expires', '30d', '--timestamp-key', join(ota.keysDir, 'timestamp.key'), '--snapshot-key', join(ota.keysDir, 'snapshot.key')]);
  const days = (expires: string) => (Date.parse(expires) - Date.now()) / 86_400_000;
  const signed = (json: string) => (JSON.parse(json) as { signed: { version: number; expires: string } }).signed;
  const inBundle = signed(execFileSync('tar', ['-xOf', bundle, './metadata/timestamp.json'], { encoding: 'utf8' }));
  t.ok(days(inBundle.expires) > 29 && days(inBundle.expires) <= 30, `the bundle's timestamp lives 30 days (${days(inBundle.expires).toFixed(1)})`);
  const served = signed(readFileSync(join(ota.tufDir, 'timestamp.json'), 'utf8'));
  t.ok(days(served.expires) <= 1, `the served timestamp keeps its one-day lifetime (${days(served.expires).toFixed(2)} days)`);

  // A device that installed from the bundle trusts its versions; the served repository must not look like a rollback to it.
  const metadata = join(ota.ostree.dir, 'shelf-metadata');
  mkdirSync(metadata);
  execFileSync('tar', ['-xf', bundle, '-C', metadata, '--strip-components=2', './metadata']);
  const store = await Store.open({ location: join(ota.ostree.dir, 'device-store'), version: 1 });
  t.teardown(() => store.close());
  const fetcher = new DirFetcher(metadata);
  const client = new TufClient({ store, fetcher, initialRoot: new Uint8Array(readFileSync(join(ota.tufDir, '1.root.json'))), now: () => new Date(), log: silentLogger });
  t.equal((await client.refresh()).versions.timestamp, inBundle.version, 'trusted the bundle');
  fetcher.dir = ota.tufDir;
  const online = await client.refresh();
  t.ok(online.versions.timestamp > inBundle.version, `online: timestamp v${online.versions.timestamp} after the bundle's v${inBundle.version}`);
});

t.test('an offline bundle larger than the free space (with the apply headroom) is refused before anything is unpacked', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const bundle = join(ota.ostree.dir, 'v2.bundle');
  await ota.ctl(['release', 'bundle', '--repo', ota.tufDir, '--target', 'releases/gw-demo/x86_64/2', '--out', bundle]);
  const d = device(t, ota, { server: 'http://127.0.0.1:9/tuf/', ostreeUrl: undefined, applyHeadroomBytes: Number.MAX_SAFE_INTEGER });
  const { daemon } = await d.boot();
  const refused = await d.cli(['update', 'install', bundle]);
  t.equal(refused.exitCode, 73, `DISK_SPACE exits 73, not 75 (temporary): ${refused.stderr}`);
  t.match(refused.stderr, new RegExp(`^bundle ${bundle}: receiving and unpacking it needs twice its \\d+ bytes plus the apply headroom`), 'named as the caller named it');
  t.same(readdirSync(join(d.world.stateDir, 'bundle-upload')), [], 'nothing kept');
  t.notOk(existsSync(join(d.world.stateDir, 'bundle')), 'nothing unpacked');
  daemon.kill('SIGTERM');
  await daemon;
});

t.test('an offline bundle with the full commit (no delta from the booted one): only its repository is unpacked, and v2 installs', async (t) => {
  const ota = await world(t);
  await ota.release(2);
  const bundle = join(ota.ostree.dir, 'full.bundle');
  await ota.ctl(['release', 'bundle', '--repo', ota.tufDir, '--target', 'releases/gw-demo/x86_64/2', '--out', bundle, '--ostree-repo', ota.ostree.buildRepo]);
  const d = device(t, ota, { server: 'http://127.0.0.1:9/tuf/', ostreeUrl: undefined });
  const { daemon } = await d.boot();
  const install = await d.cli(['update', 'install', bundle]);
  t.equal(install.exitCode, 0, install.stderr);
  t.equal((await daemon).exitCode, 0, 'rebooted into v2');
  t.ok(existsSync(join(d.world.stateDir, 'bundle', 'repo', 'config')), 'the bundle\'s repository was unpacked');
  t.notOk(existsSync(join(d.world.stateDir, 'bundle', 'targets')), 'nothing else');
  t.match(await d.adminStatus(), new RegExp(`${ota.ostree.commit(2)}\\.0`));
});

t.test('offline bundle: installs v2 with no network; a bundle for another device class is refused', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  await ota.release(3, { hardware: 'other-board', deltaFrom: [1] });
  const bundle = join(ota.ostree.dir, 'v2.bundle');
  await ota.ctl(['release', 'bundle', '--repo', ota.tufDir, '--target', 'releases/gw-demo/x86_64/2', '--out', bundle]);
  const otherBundle = join(ota.ostree.dir, 'other.bundle');
  await ota.ctl(['release', 'bundle', '--repo', ota.tufDir, '--target', 'releases/other-board/x86_64/3', '--out', otherBundle]);
  // No server at all: the update section points at an address nothing listens on.
  const d = device(t, ota, { server: 'http://127.0.0.1:9/tuf/', ostreeUrl: undefined });
  const { daemon } = await d.boot();
  const refused = await d.cli(['update', 'install', otherBundle]);
  t.equal(refused.exitCode, 65, refused.stdout + refused.stderr);
  t.match(refused.stderr, /other\.bundle: it is for other-board\/x86_64, this device is gw-demo\/x86_64/);
  // From a tmpfs only the CLI's mount namespace has (as PrivateTmp keeps a user's /tmp from the
  // unit): the daemon cannot open that path, so the CLI sends the file's bytes.
  const shelf = join(ota.ostree.dir, 'shelf');
  mkdirSync(shelf);
  const cli = ['dist/runtime/cli/outpost.js', 'update', 'install', join(shelf, 'v2.bundle')];
  const install = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs "$1" && cp "$2" "$1/" && shift 2 && exec node "$@"', 'sh', shelf, bundle, ...cli], { reject: false, env: { OUTPOST_CONFIG: d.world.configPath } });
  t.equal(install.exitCode, 0, install.stderr);
  t.match(install.stdout, /installing release 2/);
  t.notOk(existsSync(join(shelf, 'v2.bundle')), 'the daemon\'s view of that path is empty');
  t.same(readdirSync(join(d.world.stateDir, 'bundle-upload')), [], 'the received copy is gone once unpacked');
  const first = await daemon;
  t.equal(first.exitCode, 0, 'rebooted into v2');
  const { daemon: second } = await d.boot();
  const status = await until('commit', async () => {
    const s = await d.status().catch(() => undefined);
    return s?.state === 'idle' && s.last ? s : undefined;
  });
  t.match(status.last, { result: 'committed', version: 2 });
  t.notOk(existsSync(join(d.world.stateDir, 'bundle', 'bundle.json')), 'the unpacked bundle is removed once the update is over');
  second.kill('SIGTERM');
  await second;
});
