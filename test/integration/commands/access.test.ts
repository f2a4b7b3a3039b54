/**
 * Just-in-time remote access end to end, all real: the daemon (and in one case the installer doing
 * root's part), mosquitto with mutual TLS, signed `grant-access` / `revoke-access` commands, a
 * local account made for the test, the test's own sshd (never the host's: scripts/world/sshd.ts,
 * shared with the demo) and a second sshd as the bastion of the reverse tunnel. Logins are real
 * `ssh` logins with the operator's key.
 */
import t, { type Test } from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { connectAsync, type MqttClient } from 'mqtt';
import { newCommand, signCommand } from '../../../runtime/commands/index.js';
import { parseCommandResult, type CommandResult } from '../../../runtime/protocol/index.js';
import type { PrivateKey } from '../../../runtime/trust/index.js';
import type { OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice, type OtaDevice } from '../../../scripts/world/ota-device.js';
import type { CertPair, Pki } from '../../../scripts/world/pki.js';
import { freePort, type Mosquitto } from '../../../scripts/world/mosquitto.js';
import { createSshWorld, type Sshd, type SshWorld } from '../../../scripts/world/sshd.js';
import { until } from '../../../scripts/world/until.js';
import { bootKnowingIssuers, createCommandWorld, type CommandWorld } from '../../fixtures/command-world.js';

const deviceId = 'gw-test-1';
const principal = 'outpost-jit-test';
let ota: OtaWorld;
let pki: Pki;
let broker: Mosquitto;
let operatorCert: CertPair;
let issuerKey: PrivateKey;
let ssh: SshWorld;
let device: Sshd;
let bastion: Sshd;
let operatorPub: string;

let world: CommandWorld;

t.before(async () => {
  world = await createCommandWorld();
  ({ ota, pki, broker, fleetCert: operatorCert } = world);
  issuerKey = await world.addIssuer('operator', ['grant-access', 'revoke-access']);
  ssh = await createSshWorld(principal);
  ({ operatorPub } = ssh);
  device = await ssh.startSshd('device');
  bastion = await ssh.startSshd('bastion', ['PermitRootLogin prohibit-password', 'AllowTcpForwarding remote']);
});

t.teardown(async () => {
  await ssh?.close();
  await world?.close();
});

/** A device with the access commands on; split: the installer does root's part. */
async function accessDevice(t: Test, split = false): Promise<{ device: OtaDevice; daemon: ResultPromise; boot: () => Promise<{ daemon: ResultPromise }> }> {
  const d = otaDevice(ota, {}, split ? { split: {} } : {});
  t.teardown(d.cleanup);
  d.world.writeConfig({
    broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key, reconnectMinMs: 200, reconnectMaxMs: 1000 },
    update: ota.updateConfig(),
    commands: { access: { principals: [principal], keysDir: device.keysDir, maxDurationSec: 60, sshdPort: device.port, loginPollSec: 1, tunnelHosts: ['127.0.0.1'] } },
    ...(split ? { installer: { socket: join(d.world.dir, 'installer.sock'), stateDir: join(d.world.dir, 'installer-state'), idleExitSec: 0 } } : {}),
  });
  return { device: d, ...(await bootKnowingIssuers(t, d)) };
}

interface Heard {
  results: CommandResult[];
  events: Record<string, unknown>[];
  client: MqttClient;
}

async function listen(t: Test): Promise<Heard> {
  const client = await connectAsync(broker.url, { protocolVersion: 5, ca: readFileSync(pki.ca.cert), cert: readFileSync(operatorCert.cert), key: readFileSync(operatorCert.key), reconnectPeriod: 0, clientId: `watch-${Math.random().toString(16).slice(2)}` });
  t.teardown(() => client.endAsync(true));
  const heard: Heard = { results: [], events: [], client };
  client.on('message', (topic, payload) => {
    if (topic.endsWith('/cmd/result')) heard.results.push(parseCommandResult(payload));
    else heard.events.push(JSON.parse(payload.toString()) as Record<string, unknown>);
  });
  await client.subscribeAsync(['outpost/v1/+/cmd/result', 'outpost/v1/+/events'], { qos: 1 });
  return heard;
}

async function send(heard: Heard, type: string, args: Record<string, unknown>): Promise<CommandResult> {
  const id = `${type}-${Math.random().toString(16).slice(2, 10)}`;
  const envelope = signCommand(newCommand({ issuer: issuerKey.keyid, target: { device: deviceId }, type, args, id, validitySec: 600 }), issuerKey);
  await heard.client.publishAsync(`outpost/v1/${deviceId}/cmd`, JSON.stringify(envelope), { qos: 1 });
  return until(`the result of ${id}`, () => heard.results.find((r) => r.id === id), 30_000);
}

/** A login running `true`: its exit code (255: refused). */
const login = async (port = device.port): Promise<number | undefined> => (await ssh.login(port)).exitCode;

/** An open session (`sleep 120`) and when it ended. */
function session(t: Test): ReturnType<SshWorld['session']> {
  const open = ssh.session(device.port);
  t.teardown(() => open.process.kill('SIGKILL'));
  return open;
}

const keyLines = () => (existsSync(join(device.keysDir, principal)) ? readFileSync(join(device.keysDir, principal), 'utf8').split('\n').filter((l) => l.includes('outpost-grant:')) : []);

/** The single-process device the tests share (each test's grants are over when it ends). */
let shared: ReturnType<typeof accessDevice> | undefined;
const root = t;
const sharedDevice = () => (shared ??= accessDevice(root));
/**
 * A device of a test's own has the same device id and key directory: with the shared one still
 * running, both took the same commands (the broker's session takeover between them) and wrote the
 * same key file, so one's set could remove the other's key.
 */
async function stopSharedDevice(): Promise<void> {
  const running = await shared;
  shared = undefined;
  if (!running) return;
  running.daemon.kill('SIGKILL');
  await running.daemon;
}

t.test('a grant: login works, an open session is ended at expiry and no login works after; every step an event', async (t) => {
  await sharedDevice();
  const heard = await listen(t);
  t.equal(await login(), 255, 'no login before the grant');
  const granted = await send(heard, 'grant-access', { publicKey: operatorPub, principal, durationSec: 4 });
  t.equal(granted.outcome, 'succeeded', granted.message);
  const output = granted.output as { grantId: string; fingerprint: string; expiresAt: string };
  t.equal(output.grantId, granted.id);
  t.match(keyLines(), [/^expiry-time="\d{14}Z",restrict,pty ssh-ed25519 \S+ outpost-grant:/], 'the line outpost wrote, the comment dropped');
  const grantedAt = Date.now();
  t.equal(await login(), 0, 'login works during the grant');
  const open = session(t);
  await until('the login event', () => heard.events.find((e) => e.type === 'access-login'), 15_000);
  await until('the session ended', () => (open.ended() ? true : undefined), 20_000);
  t.ok(Date.now() - grantedAt >= 3_000, 'not before the grant expired');
  t.equal(await login(), 255, 'no login after expiry');
  t.same(keyLines(), [], 'the key is gone from the file');
  await until('the expiry event', () => heard.events.find((e) => e.type === 'access-expired'), 10_000);
  t.match(heard.events.filter((e) => e.grantId === granted.id || e.type === 'access-login'), [
    { schema: 'outpost.event/1', type: 'access-granted', principal, fingerprint: output.fingerprint, expiresAt: output.expiresAt },
    { schema: 'outpost.event/1', type: 'access-login', principal, grants: [granted.id] },
    { schema: 'outpost.event/1', type: 'access-expired', principal, reason: 'expired' },
  ]);
  // What the config does not allow is refused before anything is recorded.
  const tooLong = await send(heard, 'grant-access', { publicKey: operatorPub, principal, durationSec: 61 });
  t.equal(tooLong.outcome, 'rejected');
  const root = await send(heard, 'grant-access', { publicKey: operatorPub, principal: 'root', durationSec: 5 });
  t.equal(root.outcome, 'rejected');
  const smuggled = await send(heard, 'grant-access', { publicKey: `command="/bin/sh" ${operatorPub}`, principal, durationSec: 5 });
  t.equal(smuggled.outcome, 'rejected');
});

t.test('revoke-access: the key goes and the open session ends at once', async (t) => {
  await sharedDevice();
  const heard = await listen(t);
  const granted = await send(heard, 'grant-access', { publicKey: operatorPub, principal, durationSec: 60, from: '127.0.0.1,::1' });
  t.equal(granted.outcome, 'succeeded', granted.message);
  t.match(keyLines(), [/,from="127\.0\.0\.1,::1",restrict,pty /]);
  t.equal(await login(), 0, 'login works');
  const open = session(t);
  await until('the session up', () => heard.events.find((e) => e.type === 'access-login'), 15_000);
  const fingerprint = (granted.output as { fingerprint: string }).fingerprint;
  const revoked = await send(heard, 'revoke-access', { fingerprint });
  t.match(revoked, { outcome: 'succeeded', output: { revoked: [granted.id] } });
  await until('the session ended', () => (open.ended() ? true : undefined), 5_000);
  t.equal(await login(), 255, 'no login after the revoke');
  t.same(keyLines(), []);
  t.match(await until('the revoke event', () => heard.events.find((e) => e.type === 'access-revoked'), 10_000), { grantId: granted.id, reason: 'revoked', fingerprint });
  t.match(await send(heard, 'revoke-access', { grantId: granted.id }), { outcome: 'succeeded', output: { revoked: [] } }, 'nothing left to revoke');
});

t.test('expiry holds across a kill -9 of the daemon (the installer doing root\'s part)', async (t) => {
  await stopSharedDevice();
  const { daemon, boot } = await accessDevice(t, true);
  const heard = await listen(t);
  // Long enough that a restart on a loaded machine (CI) still comes well before the expiry.
  const granted = await send(heard, 'grant-access', { publicKey: operatorPub, principal, durationSec: 25 });
  t.equal(granted.outcome, 'succeeded', granted.message);
  const grantedAt = Date.now();
  t.equal(await login(), 0);
  const open = session(t);
  daemon.kill('SIGKILL');
  await daemon;
  await new Promise((r) => setTimeout(r, 500));
  await boot();
  t.ok(Date.now() - grantedAt < 20_000, 'restarted before the grant expired');
  t.equal(keyLines().length, 1, 'the key is still there after the restart');
  await until('the session ended', () => (open.ended() ? true : undefined), 40_000);
  t.ok(Date.now() - grantedAt >= 24_000, 'at the grant\'s expiry');
  await until('the key removed by outpost', () => (keyLines().length === 0 ? true : undefined), 10_000);
  t.equal(await login(), 255);
  t.ok(heard.events.some((e) => e.type === 'access-expired' && e.grantId === granted.id), 'the expiry event');
});

t.test('a reverse tunnel reaches the device\'s sshd through the bastion for the grant\'s lifetime', async (t) => {
  await sharedDevice();
  const heard = await listen(t);
  const remotePort = await freePort();
  // The same bastion under a name that is not on commands.access.tunnelHosts.
  const offList = await send(heard, 'grant-access', { publicKey: operatorPub, principal, durationSec: 60, tunnel: { host: 'localhost', port: bastion.port, user: 'root', hostKey: bastion.hostKey, remotePort } });
  t.match(offList, { outcome: 'rejected', reason: 'bad-args', message: /tunnel\.host: not in commands\.access\.tunnelHosts \(localhost\)/ });
  const granted = await send(heard, 'grant-access', { publicKey: operatorPub, principal, durationSec: 60, tunnel: { host: '127.0.0.1', port: bastion.port, user: 'root', hostKey: bastion.hostKey, remotePort } });
  t.equal(granted.outcome, 'succeeded', granted.message);
  const devicePublicKey = (granted.output as { tunnel: { devicePublicKey: string } }).tunnel.devicePublicKey;
  t.match(devicePublicKey, /^ssh-ed25519 \S+$/);
  // The bastion's operator authorizes the device's tunnel key; the tunnel's retries get in.
  writeFileSync(join(bastion.keysDir, 'root'), `${devicePublicKey}\n`);
  await until('a login through the tunnel', async () => ((await login(remotePort)) === 0 ? true : undefined), 30_000);
  const revoked = await send(heard, 'revoke-access', { grantId: granted.id });
  t.match(revoked, { outcome: 'succeeded', output: { revoked: [granted.id] } });
  await until('the tunnel closed', async () => ((await execa('ssh-keyscan', ['-p', String(remotePort), '-T', '2', '127.0.0.1'], { reject: false })).stdout.trim() === '' ? true : undefined), 15_000);
});
