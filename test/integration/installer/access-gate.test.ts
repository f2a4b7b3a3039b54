/**
 * The installer's access gate on real processes: the daemon and `outpost installer` split, a real
 * mosquitto, signed commands from an issuer of the signed metadata. What a compromised agent could
 * ask the installer for directly (`access.set` on its socket) is refused unless the signed
 * `grant-access` that granted the key comes with it, and the key files stay as they were; the
 * grant the daemon received works end to end, and once revoked its envelope does not bring it back.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { connectAsync } from 'mqtt';
import { newCommand, signCommand } from '../../../runtime/commands/index.js';
import { installerCall } from '../../../runtime/installer/index.js';
import { parseCommandResult, type CommandEnvelope, type CommandResult } from '../../../runtime/protocol/index.js';
import { generateKey, type PrivateKey } from '../../../runtime/trust/index.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';
import { commandDeviceId, createCommandWorld, type CommandWorld } from '../../fixtures/command-world.js';

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
  const boot = async () => {
    const { daemon } = await device.boot();
    t.teardown(() => daemon.kill('SIGKILL'));
    return { daemon };
  };
  const { daemon } = await boot();
  // The check exports the signed metadata the installer walks (and makes the issuer known to the agent).
  const check = await device.cli(['update', 'check']);
  if (check.exitCode !== 0) throw new Error(`update check: ${check.stderr}`);
  const keysFile = join(keysDir, principal);
  const recordFile = join(device.world.dir, 'installer-state', 'access-grants.json');
  return { socket, daemon, boot, recorded: () => (existsSync(recordFile) ? statSync(recordFile).mtimeMs : 0), keys: () => (existsSync(keysFile) ? readFileSync(keysFile, 'utf8') : '(none)') };
}

interface Grant {
  publicKey: string;
  principal: string;
  durationSec: number;
  from?: string;
}

function grantEnvelope(args: Grant, options: { key?: PrivateKey; device?: string; id?: string } = {}): CommandEnvelope {
  const key = options.key ?? issuer;
  return signCommand(newCommand({ issuer: key.keyid, target: { device: options.device ?? commandDeviceId }, type: 'grant-access', args: { ...args }, id: options.id ?? `grant-${randomBytes(4).toString('hex')}`, validitySec: 600 }), key);
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

async function send(t: Test, type: string, args: Record<string, unknown>): Promise<{ result: CommandResult; envelope: CommandEnvelope }> {
  const client = await connectAsync(world.broker.url, { protocolVersion: 5, ca: readFileSync(world.pki.ca.cert), cert: readFileSync(world.fleetCert.cert), key: readFileSync(world.fleetCert.key), reconnectPeriod: 0, clientId: `gate-${randomBytes(4).toString('hex')}` });
  t.teardown(() => client.endAsync(true));
  const results: CommandResult[] = [];
  client.on('message', (_topic, payload) => results.push(parseCommandResult(payload)));
  await client.subscribeAsync(`outpost/v1/${commandDeviceId}/cmd/result`, { qos: 1 });
  const envelope = signCommand(newCommand({ issuer: issuer.keyid, target: { device: commandDeviceId }, type, args, validitySec: 600 }), issuer);
  await client.publishAsync(`outpost/v1/${commandDeviceId}/cmd`, JSON.stringify(envelope), { qos: 1 });
  return { result: await until(`the result of ${envelope.signed.id}`, () => results.find((r) => r.id === envelope.signed.id), 30_000), envelope };
}

t.test('an access.set the signed grants do not prove is refused and nothing is written; a signed grant works, and once revoked stays out', async (t) => {
  const { socket, keys, daemon, boot, recorded } = await gateDevice(t);
  const set = (entries: ReturnType<typeof entry>[]) => installerCall(socket, { op: 'access.set', entries });
  const refused = async (entries: ReturnType<typeof entry>[], message: RegExp, what: string) => {
    const before = keys();
    await t.rejects(set(entries), { code: 'ACCESS_UNPROVEN', message }, what);
    t.equal(keys(), before, `${what}: the key file is unchanged`);
  };
  const args: Grant = { publicKey: sshKey(), principal, durationSec: 60 };

  await refused([entry(args, undefined)], /grant forged-1: it adds a key and carries no signed grant-access command/, 'no envelope');
  await refused([entry(args, grantEnvelope(args, { key: generateKey() }))], /does not verify \(unknown-issuer\)/, 'an envelope signed by a key the metadata does not list');
  const forOther = { ...args, principal: otherPrincipal };
  await refused([entry(args, grantEnvelope(forOther))], /its command grants principal outpost-gate-two, not outpost-gate-one/, 'an envelope for another principal');
  await refused([entry(args, grantEnvelope({ ...args, publicKey: sshKey() }))], /its command grants another key/, 'an envelope for another key');
  await refused([entry(args, grantEnvelope({ ...args, from: '10.0.0.1' }))], /its command grants from=10\.0\.0\.1, not from=\(any\)/, 'an envelope with a from= the entry drops');
  const short = { ...args, durationSec: 10 };
  await refused([entry(short, grantEnvelope(short), { expiresAt: new Date(Date.now() + 100_000).toISOString() })], /later than its command allows/, 'an expiry longer than the command allows');
  await refused([entry(args, grantEnvelope(args, { device: 'gw-someone-else' }))], /does not verify \(wrong-target\): the command is for device gw-someone-else/, 'an envelope for another device');
  const other = grantEnvelope(args);
  await refused([entry(args, other, { id: 'another-id' })], /its command is grant-\w+, another grant/, 'an envelope of another grant id');
  t.equal(keys(), '(none)', 'no key was ever written');

  // The grant as the daemon receives it: its envelope travels with the first set.
  const { result: granted, envelope: grantEnvelopeSent } = await send(t, 'grant-access', { publicKey: args.publicKey, principal, durationSec: 60 });
  t.equal(granted.outcome, 'succeeded', granted.message);
  const grantId = granted.id;
  const expiresAt = (granted.output as { expiresAt: string }).expiresAt;
  t.match(keys(), new RegExp(`^expiry-time="\\d{14}Z",restrict,pty ${args.publicKey.replace(/[+/]/g, '\\$&')} outpost-grant:${grantId}$`, 'm'), 'the signed grant is in the key file');
  const accepted = { id: grantId, principal, publicKey: args.publicKey, expiresAt };
  // Known to the installer now: sent again without proof, as the agent does, it stays; changed, it is refused.
  await set([accepted]);
  const withGrant = keys();
  await refused([{ ...accepted, expiresAt: new Date(Date.parse(expiresAt) + 30_000).toISOString() }], new RegExp(`grant ${grantId}: it was accepted until .*; a grant is never extended`), 'an accepted grant extended');
  await refused([{ ...accepted, principal: otherPrincipal }], /a grant never changes/, 'an accepted grant moved to another principal');
  await refused([accepted, entry(args, undefined)], /grant forged-1: it adds a key/, 'a forged key next to the real one');
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
  await refused([entry(args, grantEnvelopeSent, { expiresAt })], new RegExp(`grant ${grantId}: it was removed \\(revoked or ended\\) and is not added again`), 'the revoked grant replayed with its envelope');
  t.notMatch(keys(), /outpost-grant:/);
});
