/**
 * The installer's access gate on real processes: the daemon and `outpost installer` split, a real
 * mosquitto, signed commands from an issuer of the signed metadata. What a compromised agent could
 * ask the installer for directly (`access.set` on its socket) is refused unless the signed
 * `grant-access` that granted the key comes with it; the grant the daemon received works end to
 * end, and once revoked its envelope does not bring it back. Refusals are per grant: one the
 * installer cannot prove never holds up the others. Expired metadata and a clock set back are
 * the field's conditions the gate is judged under too.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { connectAsync } from 'mqtt';
import { newCommand, signCommand } from '../../../runtime/commands/index.js';
import { localAccessHost } from '../../../runtime/access/index.js';
import { gatedAccessHost, installerCall } from '../../../runtime/installer/index.js';
import { createLogger } from '../../../runtime/logs/index.js';
import { trustedExportDir } from '../../../runtime/update/index.js';
import { openRepository } from '../../../runtime/update/tuf/index.js';
import { parseCommandResult, type CommandEnvelope, type CommandResult } from '../../../runtime/protocol/index.js';
import { generateKey, readPrivateKeyFile, type PrivateKey } from '../../../runtime/trust/index.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';
import { bootKnowingIssuers, commandDeviceId, createCommandWorld, type CommandWorld } from '../../fixtures/command-world.js';

const principal = 'outpost-gate-one';
const otherPrincipal = 'outpost-gate-two';

/** An ed25519 public key as ssh-keygen writes one (the gate and sshd read only its structure). */
function sshKey(): string {
  const string = (b: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(b.length);
    return Buffer.concat([length, b]);
  };
  return `ssh-ed25519 ${Buffer.concat([string(Buffer.from('ssh-ed25519')), string(randomBytes(32))]).toString('base64')}`;
}

let world: CommandWorld;
let issuer: PrivateKey;

t.before(async () => {
  world = await createCommandWorld();
  issuer = await world.addIssuer('operator', ['grant-access', 'revoke-access']);
});
t.teardown(() => world?.close());

async function gateDevice(t: Test) {
  const device = otaDevice(world.ota, {}, { split: {} });
  t.teardown(device.cleanup);
  const socket = join(device.world.dir, 'installer.sock');
  const keysDir = join(device.world.dir, 'keys');
  device.world.writeConfig({
    broker: world.brokerSection(),
    update: world.ota.updateConfig(),
    commands: { access: { principals: [principal, otherPrincipal], keysDir, maxDurationSec: 120, tunnels: false } },
    installer: { socket, stateDir: join(device.world.dir, 'installer-state'), idleExitSec: 0 },
  });
  // The check exports the signed metadata the installer walks (and makes the issuer known to the agent).
  const { daemon, boot } = await bootKnowingIssuers(t, device);
  const keysFile = join(keysDir, principal);
  const recordFile = join(device.world.dir, 'installer-state', 'access-grants.json');
  return {
    socket,
    daemon,
    boot,
    stateDir: device.world.stateDir,
    keysFile,
    recordFile,
    recorded: () => (existsSync(recordFile) ? statSync(recordFile).mtimeMs : 0),
    keys: () => (existsSync(keysFile) ? readFileSync(keysFile, 'utf8') : '(none)'),
  };
}

interface Grant {
  publicKey: string;
  principal: string;
  durationSec: number;
  from?: string;
}

function grantEnvelope(args: Grant, options: { key?: PrivateKey; device?: string; id?: string; validitySec?: number } = {}): CommandEnvelope {
  const key = options.key ?? issuer;
  return signCommand(newCommand({ issuer: key.keyid, target: { device: options.device ?? commandDeviceId }, type: 'grant-access', args: { ...args }, id: options.id ?? `grant-${randomBytes(4).toString('hex')}`, validitySec: options.validitySec ?? 600 }), key);
}

/** What a compromised agent sends: one entry, with the proof it chooses. */
function entry(args: Grant, proof: CommandEnvelope | undefined, overrides: { id?: string; principal?: string; publicKey?: string; expiresAt?: string } = {}) {
  return {
    id: overrides.id ?? proof?.signed.id ?? 'forged-1',
    principal: overrides.principal ?? args.principal,
    publicKey: overrides.publicKey ?? args.publicKey,
    ...(args.from === undefined ? {} : { from: args.from }),
    expiresAt: overrides.expiresAt ?? new Date(Date.now() + args.durationSec * 1000).toISOString(),
    ...(proof === undefined ? {} : { proof }),
  };
}

async function send(t: Test, type: string, args: Record<string, unknown>, validitySec = 600): Promise<{ result: CommandResult; envelope: CommandEnvelope }> {
  const client = await connectAsync(world.broker.url, { protocolVersion: 5, ca: readFileSync(world.pki.ca.cert), cert: readFileSync(world.fleetCert.cert), key: readFileSync(world.fleetCert.key), reconnectPeriod: 0, clientId: `gate-${randomBytes(4).toString('hex')}` });
  t.teardown(() => client.endAsync(true));
  const results: CommandResult[] = [];
  client.on('message', (_topic, payload) => results.push(parseCommandResult(payload)));
  await client.subscribeAsync(`outpost/v1/${commandDeviceId}/cmd/result`, { qos: 1 });
  const envelope = signCommand(newCommand({ issuer: issuer.keyid, target: { device: commandDeviceId }, type, args, validitySec }), issuer);
  await client.publishAsync(`outpost/v1/${commandDeviceId}/cmd`, JSON.stringify(envelope), { qos: 1 });
  return { result: await until(`the result of ${envelope.signed.id}`, () => results.find((r) => r.id === envelope.signed.id), 30_000), envelope };
}

const keyPattern = (publicKey: string) => publicKey.replace(/[+/]/g, '\\$&');

t.test('an access.set the signed grants do not prove is refused per grant and writes nothing of it; a signed grant works, and once revoked stays out', async (t) => {
  const { socket, keys, daemon, boot, recorded, recordFile } = await gateDevice(t);
  const set = (entries: ReturnType<typeof entry>[]) => installerCall(socket, { op: 'access.set', entries });
  const refused = async (entries: ReturnType<typeof entry>[], id: string, reason: RegExp, what: string) => {
    const before = keys();
    const outcome = await set(entries);
    t.match(outcome.refused, [{ id, reason }], what);
    t.equal(outcome.refused.length, 1, `${what}: only that grant is refused`);
    const after = keys();
    if (before.includes(`outpost-grant:${id}`)) t.notMatch(after, `outpost-grant:${id}`, `${what}: the set leaves it out, so its key is removed`);
    else t.equal(after, before, `${what}: the key file is unchanged`);
  };
  const args: Grant = { publicKey: sshKey(), principal, durationSec: 60 };

  await refused([entry(args, undefined)], 'forged-1', /^it adds a key and carries no signed grant-access command$/, 'no envelope');
  await refused([entry(args, grantEnvelope(args, { key: generateKey() }))], 'grant-', /does not verify \(unknown-issuer\)/, 'an envelope signed by a key the metadata does not list');
  const forOther = { ...args, principal: otherPrincipal };
  await refused([entry(args, grantEnvelope(forOther))], 'grant-', /its command grants principal outpost-gate-two, not outpost-gate-one/, 'an envelope for another principal');
  await refused([entry(args, grantEnvelope({ ...args, publicKey: sshKey() }))], 'grant-', /its command grants another key/, 'an envelope for another key');
  await refused([entry(args, grantEnvelope({ ...args, from: '10.0.0.1' }))], 'grant-', /its command grants from=10\.0\.0\.1, not from=\(any\)/, 'an envelope with a from= the entry drops');
  const short = { ...args, durationSec: 10 };
  await refused([entry(short, grantEnvelope(short), { expiresAt: new Date(Date.now() + 100_000).toISOString() })], 'grant-', /later than its command allows/, 'an expiry longer than the command allows');
  await refused([entry(args, grantEnvelope(args, { device: 'gw-someone-else' }))], 'grant-', /does not verify \(wrong-target\): the command is for device gw-someone-else/, 'an envelope for another device');
  const other = grantEnvelope(args);
  await refused([entry(args, other, { id: 'another-id' })], 'another-id', /its command is grant-\w+, another grant/, 'an envelope of another grant id');
  t.equal(keys(), '(none)', 'no key was ever written');

  // The grant as the daemon receives it: its envelope travels with the first set.
  const { result: granted, envelope: grantEnvelopeSent } = await send(t, 'grant-access', { publicKey: args.publicKey, principal, durationSec: 60 });
  t.equal(granted.outcome, 'succeeded', granted.message);
  const grantId = granted.id;
  const expiresAt = (granted.output as { expiresAt: string }).expiresAt;
  t.match(keys(), new RegExp(`^expiry-time="\\d{14}Z",restrict,pty ${keyPattern(args.publicKey)} outpost-grant:${grantId}$`, 'm'), 'the signed grant is in the key file');
  const accepted = { id: grantId, principal, publicKey: args.publicKey, expiresAt };
  // Known to the installer now: sent again without proof, as the agent does, it stays.
  t.same(await set([accepted]), { refused: [] });
  const withGrant = keys();
  await refused([accepted, entry(args, undefined)], 'forged-1', /^it adds a key/, 'a forged key next to the real one');
  t.equal(keys(), withGrant);

  // The agent killed and started again sends its grants again, with their proofs: the installer knows them already.
  daemon.kill('SIGKILL');
  await daemon;
  const before = recorded();
  await boot();
  await until('the agent set the keys again (the installer writes its record at each set)', () => (recorded() > before ? true : undefined), 20_000);
  t.equal(keys(), withGrant, 'the key stays across the restart');

  const { result: revoked } = await send(t, 'revoke-access', { grantId });
  t.match(revoked, { outcome: 'succeeded', output: { revoked: [grantId] } });
  t.notMatch(keys(), /outpost-grant:/, 'the key is gone');
  // The agent kept the envelope (still valid for minutes): shown again, it does not bring the key back.
  await refused([entry(args, grantEnvelopeSent, { expiresAt })], grantId, /^it was removed \(revoked or ended\) and is not added again$/, 'the revoked grant replayed with its envelope');
  t.notMatch(keys(), /outpost-grant:/);

  // A grant never changes: asked for longer or for another principal, it is refused, and a set leaving it out ends it.
  for (const [what, changed, reason] of [
    ['extended', { expiresAt: new Date(Date.now() + 90_000).toISOString() }, /^it was accepted until .*; a grant is never extended/],
    ['moved to another principal', { principal: otherPrincipal }, /^it was accepted for another principal, key or from=; a grant never changes$/],
  ] as const) {
    const proven = grantEnvelope(args);
    t.same(await set([entry(args, proven)]), { refused: [] }, `a proven grant is accepted (to be ${what})`);
    t.match(keys(), `outpost-grant:${proven.signed.id}`);
    await refused([{ ...entry(args, undefined, { id: proven.signed.id }), ...changed }], proven.signed.id, reason, `an accepted grant ${what}`);
    t.notMatch(readFileSync(recordFile, 'utf8'), new RegExp(`"${proven.signed.id}":\\{[^}]*"ended":false`), `the grant ${what} is recorded as ended`);
  }
});

t.test('a grant the installer can no longer prove ends alone: later grants and revocations go through', async (t) => {
  const { keys, keysFile, recordFile } = await gateDevice(t);
  const first = { publicKey: sshKey(), principal, durationSec: 120 };
  // Its command expires in seconds: once the installer has lost its record, nothing can prove the grant again.
  const { result: granted, envelope } = await send(t, 'grant-access', first, 6);
  t.equal(granted.outcome, 'succeeded', granted.message);
  t.match(keys(), `outpost-grant:${granted.id}`);
  rmSync(recordFile);
  rmSync(keysFile);
  await until(`grant ${granted.id}'s command expired`, () => (Date.now() > Date.parse(envelope.signed.expires) + 1_000 ? true : undefined), 30_000);

  const second = { publicKey: sshKey(), principal, durationSec: 120 };
  const { result: next } = await send(t, 'grant-access', second);
  t.equal(next.outcome, 'succeeded', `a later grant succeeds: ${next.message}`);
  t.match(keys(), `outpost-grant:${next.id}`, 'its key is written');
  t.notMatch(keys(), `outpost-grant:${granted.id}`, 'the unprovable one is not');
  const { result: revoked } = await send(t, 'revoke-access', { grantId: next.id });
  t.match(revoked, { outcome: 'succeeded', output: { revoked: [next.id] } }, 'a revocation goes through');
  t.notMatch(keys(), /outpost-grant:/, 'its key is removed');
  const { result: again } = await send(t, 'revoke-access', { grantId: granted.id });
  t.match(again, { outcome: 'succeeded', output: { revoked: [] } }, 'the refused grant was ended by the agent too');
});

t.test('with the exported metadata expired (the repository out of reach), grants are judged by the targets the installer verified last', async (t) => {
  const { keys, stateDir } = await gateDevice(t);
  const { result: first } = await send(t, 'grant-access', { publicKey: sshKey(), principal, durationSec: 60 });
  t.equal(first.outcome, 'succeeded', `the installer walks fresh metadata: ${first.message}`);
  // What the repository serves once its timestamp ran out, in the export as the agent keeps it.
  const repo = await openRepository(world.ota.tufDir);
  const timestampKey = await readPrivateKeyFile(join(world.ota.keysDir, 'timestamp.key'));
  await repo.refresh({ timestampKey, expiresMs: { timestamp: 1_000 } });
  t.teardown(async () => void (await (await openRepository(world.ota.tufDir)).refresh({ timestampKey })));
  copyFileSync(join(world.ota.tufDir, 'timestamp.json'), join(trustedExportDir(stateDir), 'timestamp.json'));
  await new Promise((resolve) => setTimeout(resolve, 1_500));

  const { result: next } = await send(t, 'grant-access', { publicKey: sshKey(), principal, durationSec: 60 });
  t.equal(next.outcome, 'succeeded', `a grant still succeeds: ${next.message}`);
  t.match(keys(), `outpost-grant:${next.id}`);
});

t.test('with the targets metadata expired too, the installer no longer vouches for the issuers', async (t) => {
  // Targets that live 25 s: the export's timestamp outlives them, so only their own lifetime runs out.
  const repo = await openRepository(world.ota.tufDir);
  const signing = { targetsKey: await readPrivateKeyFile(join(world.ota.keysDir, 'targets.key')), snapshotKey: await readPrivateKeyFile(join(world.ota.keysDir, 'snapshot.key')), timestampKey: await readPrivateKeyFile(join(world.ota.keysDir, 'timestamp.key')) };
  await repo.publish({ ...signing, expiresMs: { targets: 25_000 } });
  t.teardown(async () => void (await (await openRepository(world.ota.tufDir)).publish(signing)));
  const published = Date.now();
  const { keys } = await gateDevice(t);
  const { result: first } = await send(t, 'grant-access', { publicKey: sshKey(), principal, durationSec: 60 });
  t.equal(first.outcome, 'succeeded', `while the targets live: ${first.message}`);
  await until('the targets expired', () => (Date.now() > published + 27_000 ? true : undefined), 40_000);

  const { result: next } = await send(t, 'grant-access', { publicKey: sshKey(), principal, durationSec: 60 });
  t.match(next, { outcome: 'failed', message: /ACCESS_UNPROVEN|UPDATE_EXPIRED|does not verify/ }, `refused by the installer: ${next.message}`);
  t.notMatch(keys(), `outpost-grant:${next.id}`);
});

t.test('a clock run ahead and set back does not make the gate forget an ended grant; a clock behind the last set drops no grant', async (t) => {
  const { stateDir } = await gateDevice(t);
  const dir = mkdtempSync(join(tmpdir(), 'outpost-gate-clock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let clock = Date.now();
  const now = () => new Date(clock);
  const log = createLogger({ level: 'error' });
  const keysDir = join(dir, 'keys');
  const settings = { principals: [principal], maxDurationSec: 120 };
  const gate = gatedAccessHost({
    host: localAccessHost({ keysDir, ...settings, log, now }),
    walk: { exportDir: trustedExportDir(stateDir), agentStateDir: stateDir, rootFile: world.ota.rootFile, storeDir: join(dir, 'store'), now, log },
    recordFile: join(dir, 'access-grants.json'),
    keysDir,
    deviceId: commandDeviceId,
    groups: [],
    settings,
    skewMs: 60_000,
    now,
    log,
  });
  const args: Grant = { publicKey: sshKey(), principal, durationSec: 60 };
  const proven = entry(args, grantEnvelope(args));
  t.same(await gate.set([proven]), { refused: [] }, 'a proven grant is accepted');
  t.same(await gate.set([]), { refused: [] }, 'and ended');
  clock += 365 * 24 * 3600_000;
  t.same(await gate.set([]), { refused: [] }, 'a year later (a clock run ahead)');
  clock = Date.now();
  const replayed = await gate.set([proven]);
  t.match(replayed.refused, [{ id: proven.id, reason: /^it was removed/ }], 'back at the right time, its envelope does not bring it back');
  t.notOk(existsSync(join(keysDir, principal)), 'no key is written');

  // A power cut on a gateway without RTC: the clock starts behind the last set.
  clock = Date.now() + 3600_000;
  await gate.set([]);
  clock = Date.now();
  const fresh = { ...args, publicKey: sshKey() };
  const grant = entry(fresh, grantEnvelope(fresh));
  t.same(await gate.set([grant]), { refused: [] }, 'a grant shorter than the clock fell back is accepted');
  t.match(readFileSync(join(keysDir, principal), 'utf8'), `outpost-grant:${grant.id}`, 'and its key written');
});
