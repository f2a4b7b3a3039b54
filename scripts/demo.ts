/**
 * `npm run demo`: a throwaway loopback world — a CA and certificates, mosquitto with mutual TLS, an
 * OSTree build repo and update server with a TUF repository, a device sysroot running v1, and the
 * outpost daemon with the simulated bootloader — then an update v1 → v2 as a static delta, a bad
 * v3 rolled back on its own, a v4 that never boots, deferred after the bootloader's fallback, a
 * good v5 followed with `--wait`, an operator's rollback from it, a v6 cancelled mid-download over a
 * slow link and then installed from an offline bundle, signed remote commands (issuers in the signed metadata, `outpostctl command send`, a
 * replay answered with the recorded result, a forgery refused, SSH access granted for 10 s that
 * ends by itself and a second grant revoked, against an sshd of the demo's own), health checks (a
 * required check fixed by its own exec remediation, `outpost health` and its exit code, a reboot
 * remediation that does not help until the reboot circuit breaker opens, and its reset), and the
 * update outcomes as journald indexes them (MESSAGE_ID). Everything lives in temp dirs removed at
 * the end.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { journalEntry } from '../runtime/logs/journal.js';
import type { LogRecord } from '../runtime/logs/logger.js';
import { simulateNeverBoots } from '../runtime/update/boot/index.js';
import { newCommand, signCommand } from '../runtime/commands/index.js';
import { generateKey, readPrivateKeyFile } from '../runtime/trust/index.js';
import { createPki } from './world/pki.js';
import { startMosquitto, type Mosquitto } from './world/mosquitto.js';
import { createOtaWorld, worldHardware, type OtaWorld } from './world/ota-world.js';
import { otaDevice, type OtaDevice } from './world/ota-device.js';
import { until } from './world/until.js';
import { createSshWorld, sshWorldUnavailable, type Sshd, type SshWorld } from './world/sshd.js';
import { demoAccessConfig, demoGrantSec, showAccess } from './demo/access.js';
import { showHealth } from './demo/health.js';
import { heading, show } from './demo/ui.js';

const healthCheck = { name: 'app', command: ['/bin/sh', '-c', 'exec "$OUTPOST_DEPLOYMENT_ROOT/usr/libexec/outpost/health-check"'] };
let broker: Mosquitto | undefined;
let ota: OtaWorld | undefined;
let device: OtaDevice | undefined;
let ssh: SshWorld | undefined;
type Daemon = Awaited<ReturnType<OtaDevice['boot']>>['daemon'];
let running: Daemon | undefined;
/** Every boot's daemon, for the outcomes it logged. */
const boots: Daemon[] = [];

/** Starts the daemon as the (simulated) bootloader would after a reboot. */
async function boot(d: OtaDevice): Promise<void> {
  running = (await d.boot()).daemon;
  boots.push(running);
}

/** Stops the daemon as `systemctl stop` would. */
async function stop(): Promise<number | undefined> {
  running?.kill('SIGTERM');
  return (await running)?.exitCode;
}

/**
 * The records that carry a journal MESSAGE_ID, from every boot's output. Without journald (this
 * loopback world) they are stdout lines; under systemd they are journal entries (logs/journal.ts).
 */
async function outcomes(): Promise<(LogRecord & { messageId: string })[]> {
  const lines = (await Promise.all(boots.map(async (daemon) => (await daemon).all ?? ''))).join('\n').split('\n');
  return lines.flatMap((line) => {
    if (!line.includes('"messageId"')) return [];
    try {
      return [JSON.parse(line) as LogRecord & { messageId: string }];
    } catch {
      return [];
    }
  });
}

/** Waits until the update settles in this boot, or the daemon exits for a simulated reboot. */
async function settle(d: OtaDevice): Promise<'rebooted' | 'idle'> {
  const daemon = running;
  if (!daemon) throw new Error('demo: daemon not running');
  return until('the update', async () => {
    if (daemon.exitCode !== null || daemon.signalCode !== null) return 'rebooted' as const;
    const s = await d.status().catch(() => undefined);
    return s?.state === 'idle' ? ('idle' as const) : undefined;
  }, 120_000);
}

async function cli(d: OtaDevice, args: string[]): Promise<string> {
  const r = await d.cli(args);
  return r.exitCode === 0 ? r.stdout : `(exit ${r.exitCode}) ${r.stderr}`;
}

/**
 * Runs an update command (`update apply` by default) and boots the daemon through the (simulated)
 * reboots until the update settles; with --wait the command itself follows it to the verdict.
 */
async function updateThroughReboots(d: OtaDevice, args = ['update', 'apply']): Promise<void> {
  const command = cli(d, args);
  const waits = args.includes('--wait');
  if (!waits) show(`$ outpost ${args.join(' ')}\n${await command}`);
  for (let boots = 0; boots < 4; boots++) {
    const daemon = running;
    const settled = waits && daemon ? await Promise.race([command.then(() => 'idle' as const), daemon.then(() => 'rebooted' as const, () => 'rebooted' as const)]) : await settle(d);
    if (settled === 'idle') break;
    show('… the daemon stopped for a (simulated) reboot; the bootloader starts the default deployment');
    await boot(d);
    if (!waits) show(`$ outpost update status\n${await cli(d, ['update', 'status'])}`);
  }
  if (waits) show(`$ outpost ${args.join(' ')}\n${await command}`);
}

async function main(): Promise<void> {
  heading('A throwaway world: CA, mosquitto with mTLS, OSTree repo + update server, a device on v1');
  ota = await createOtaWorld({ versions: [1] });
  // The agent runs no ostree or bootloader command itself: `outpost installer` does, on request.
  device = otaDevice(ota, {}, { split: {} });
  const installer = { socket: join(device.world.dir, 'installer.sock'), stateDir: join(device.world.dir, 'installer-state'), idleExitSec: 0 };
  const pki = await createPki({ dir: join(device.world.dir, 'pki'), deviceId: 'gw-test-1' });
  mkdirSync(join(device.world.dir, 'broker'));
  broker = await startMosquitto({ dir: join(device.world.dir, 'broker'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  show(`mosquitto ${broker.url} (require_certificate true); update server ${ota.ostree.server.url}/tuf/; sysroot ${ota.ostree.sysroot}`);
  // The access part needs a real sshd (and root, for it and for ending sessions); without them the
  // rest of the demo still runs and that part says why it is skipped.
  const sshMissing = sshWorldUnavailable();
  let sshd: Sshd | undefined;
  if (!sshMissing) {
    ssh = await createSshWorld('outpost-demo');
    sshd = await ssh.startSshd('device');
    show(`sshd 127.0.0.1:${sshd.port} (its own config and host key; a local account outpost-demo to log in as)`);
  }
  const config = {
    broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key, reconnectMinMs: 200, reconnectMaxMs: 5000 },
    update: ota.updateConfig({ probation: { windowSec: 8, intervalSec: 1, checks: [healthCheck] } }),
    installer,
    commands: { groups: ['site-a'], ...(ssh && sshd ? { access: demoAccessConfig(ssh, sshd) } : {}) },
  };
  device.world.writeConfig(config);
  show(`agent and installer: outpost run reaches ostree and the bootloader only through outpost installer on ${installer.socket}`);
  show(`$ outpost config validate ${device.world.configPath}\n${await cli(device, ['config', 'validate', device.world.configPath])}`);

  heading('The daemon comes online (mosquitto_sub on the device topics)');
  const sub = ['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', pki.ca.cert, '--cert', pki.observer.cert, '--key', pki.observer.key];
  const online = execa('mosquitto_sub', [...sub, '-t', 'outpost/v1/gw-test-1/online', '-v', '-C', '1', '-W', '30'], { reject: false });
  await boot(device);
  show((await online).stdout);
  show(`$ outpost status\n${await until('a connected link', async () => {
    const text = await cli(device as OtaDevice, ['status']);
    return text.includes('connected') ? text : undefined;
  })}`);

  heading('Operator: sign release v2 with a static delta from v1 (outpostctl release add)');
  show(await ota.release(2, { deltaFrom: [1], extra: { 'usr/libexec/outpost/health-check': '#!/bin/sh\nexit 0\n' } }));

  heading('Device: verify TUF metadata, download the delta, deploy, reboot on trial, probation, commit');
  await updateThroughReboots(device);
  show(`$ outpost update status\n${await cli(device, ['update', 'status'])}`);
  show(`$ ostree admin status\n${await device.adminStatus()}`);
  const state = await execa('mosquitto_sub', [...sub, '-t', 'outpost/v1/gw-test-1/state', '-C', '1', '-W', '10'], { reject: false });
  show(`retained state on the broker:\n${state.stdout}`);

  heading('Remote commands: who may send what is signed metadata; every command is signed, runs once, is answered once');
  const keys = ota.keysDir;
  const signing = ['--targets-key', join(keys, 'targets.key'), '--snapshot-key', join(keys, 'snapshot.key'), '--timestamp-key', join(keys, 'timestamp.key')];
  show(await ota.ctl(['keys', 'generate', '--role', 'commands', '--name', 'operator', '--out', keys]));
  const types = ['diagnostics', 'update-check', 'grant-access', 'revoke-access'];
  show(`$ outpostctl commands issuers add --key operator.pub ${types.map((type) => `--type ${type}`).join(' ')} --max-validity 1h …\n${await ota.ctl(['commands', 'issuers', 'add', '--repo', ota.tufDir, '--key', join(keys, 'operator.pub'), ...types.flatMap((type) => ['--type', type]), '--max-validity', '1h', ...signing])}`);
  show(`$ outpost update check   (the device learns the issuers with its metadata)\n${await cli(device, ['update', 'check'])}`);
  const tls = ['--broker', broker.url, '--ca', pki.ca.cert, '--cert', pki.observer.cert, '--cert-key', pki.observer.key];
  const send = (type: string, args: Record<string, unknown> = {}) => (ota as OtaWorld).ctl(['command', 'send', ...tls, '--device', 'gw-test-1', '--type', type, '--args', JSON.stringify(args), '--key', join(keys, 'operator.key'), '--wait']);
  show(`$ outpostctl command send --device gw-test-1 --type diagnostics --key operator.key --wait\n${await send('diagnostics')}`);
  const operator = await readPrivateKeyFile(join(keys, 'operator.key'));
  const signed = newCommand({ id: 'demo-once', issuer: operator.keyid, target: { group: 'site-a' }, type: 'update-check', validitySec: 600 });
  const envelope = JSON.stringify(signCommand(signed, operator));
  const forged = JSON.stringify({ ...signCommand({ ...signed, id: 'demo-forged' }, generateKey()), signatures: [{ keyid: operator.keyid, sig: '00'.repeat(64) }] });
  const results = execa('mosquitto_sub', [...sub, '-V', 'mqttv5', '-t', 'outpost/v1/gw-test-1/cmd/result', '-C', '3', '-W', '30'], { reject: false });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const pub = (payload: string) => execa('mosquitto_pub', [...sub, '-V', 'mqttv5', '-q', '1', '-t', 'outpost/v1/group/site-a/cmd', '-m', payload]);
  show('mosquitto_pub: one group command signed by a script, the same one again (a replay), and a forgery');
  for (const payload of [envelope, envelope, forged]) await pub(payload);
  show(`results (mosquitto_sub outpost/v1/gw-test-1/cmd/result): the replay gets the recorded result, not a second run\n${(await results).stdout}`);

  heading(`Remote access just in time: a signed grant-access lets one SSH key in for ${demoGrantSec} s; at the end outpost removes it and ends the sessions`);
  if (ssh && sshd) await showAccess({ ssh, sshd, send, sub, deviceId: 'gw-test-1' });
  else show(`skipped: ${sshMissing ?? 'no sshd'}. This part logs in to a real sshd of the demo's own on 127.0.0.1.`);

  heading('Operator: release a bad v3 (its health check fails)');
  show(await ota.release(3, { deltaFrom: [2], extra: { 'usr/libexec/outpost/health-check': '#!/bin/sh\necho "app did not start" >&2\nexit 1\n' } }));

  heading('Device: v3 fails probation and is rolled back to v2 on its own');
  await updateThroughReboots(device);
  show(`$ outpost update status\n${await cli(device, ['update', 'status'])}`);
  show(`$ outpost update check\n${await cli(device, ['update', 'check'])}`);
  show(`$ ostree admin status\n${await device.adminStatus()}`);

  heading('Operator: release v4, whose kernel never reaches userspace (the simulated bootloader cannot boot it)');
  show(await ota.release(4, { deltaFrom: [2] }));
  await simulateNeverBoots(join(device.world.stateDir, 'simulated-boot.json'), ota.ostree.commit(4));

  heading('Device: the bootloader spends the trial boots and falls back to v2; with no hang seen (power loss?), v4 is deferred, not failed');
  await updateThroughReboots(device);
  show(`$ outpost update status\n${await cli(device, ['update', 'status'])}`);
  show(`$ outpost update check\n${await cli(device, ['update', 'check'])}`);
  show('(on a booted gateway a hardware watchdog reset, or outpost-trial-guard.service rebooting a trial nobody blessed, fails the release at once: npm run demo:vm)');

  heading('Operator: release a good v5; `outpost update apply --wait` follows it through its reboot to the verdict');
  show(await ota.release(5, { deltaFrom: [2], extra: { 'usr/libexec/outpost/health-check': '#!/bin/sh\nexit 0\n' } }));
  await updateThroughReboots(device, ['update', 'apply', '--wait']);

  heading('Operator: `outpost update rollback` goes back to the deployment kept for it (v2); v5 is not offered again');
  await updateThroughReboots(device, ['update', 'rollback']);
  show(`$ ostree admin status\n${await device.adminStatus()}`);

  heading('Operator: release v6 over a slow link (capped at 1 KiB/s); `outpost update cancel` stops it before its deploy');
  // Incompressible, so its delta takes a minute at the capped rate: the cancel meets the download.
  show(await ota.release(6, { deltaFrom: [2], extra: { 'usr/share/outpost-world/payload.bin': randomBytes(64 * 1024), 'usr/libexec/outpost/health-check': '#!/bin/sh\nexit 0\n' } }));
  const slowConfig = { ...config, update: ota.updateConfig({ bandwidthBytesPerSec: 1024, minDownloadBytesPerSec: 0, probation: { windowSec: 8, intervalSec: 1, checks: [healthCheck] } }) };
  device.world.writeConfig(slowConfig);
  await stop();
  await boot(device);
  show(`$ outpost update apply\n${await cli(device, ['update', 'apply'])}`);
  await until('the download under way', async () => ((await (device as OtaDevice).status()).progress?.bytes ?? 0) > 0 || undefined, 30_000);
  show(`$ outpost update status\n${await cli(device, ['update', 'status'])}`);
  show(`$ outpost update cancel\n${await cli(device, ['update', 'cancel'])}`);
  show(`$ outpost update status\n${await cli(device, ['update', 'status'])}`);
  show('(automatic checks now pass v6 over; an explicit `outpost update apply` installs it)');
  show(`$ ostree admin status\n${await device.adminStatus()}`);

  heading('Operator: v6 from an offline bundle (a USB stick): `outpost update install FILE --wait` needs no network');
  const bundle = join(ota.ostree.dir, 'outpost-v6.bundle');
  await ota.ctl(['release', 'bundle', '--repo', ota.tufDir, '--target', `releases/${worldHardware}/x86_64/6`, '--out', bundle]);
  show(`$ outpostctl release bundle --repo <tuf repo> --target releases/${worldHardware}/x86_64/6 --out outpost-v6.bundle\n(signed metadata and the static delta in one file; the CLI hands the daemon the opened file)`);
  await updateThroughReboots(device, ['update', 'install', bundle, '--wait']);
  show(`$ ostree admin status\n${await device.adminStatus()}`);

  // After the updates: required health checks would take part in their probations.
  const healthDevice = device;
  await showHealth({
    device: healthDevice,
    sub,
    deviceId: 'gw-test-1',
    configure: async (health) => {
      healthDevice.world.writeConfig({ ...slowConfig, health });
      await stop();
      await boot(healthDevice);
    },
    exited: async () => (await running)?.all ?? '',
    boot: () => boot(healthDevice),
  });

  heading('Stopping the daemon (SIGTERM): the broker marks the device offline');
  const offline = execa('mosquitto_sub', [...sub, '-t', 'outpost/v1/gw-test-1/online', '-v', '-C', '2', '-W', '15'], { reject: false });
  await new Promise((resolve) => setTimeout(resolve, 500));
  show(`daemon exited with ${await stop()}`);
  show((await offline).stdout);
  const installerRun = device.installer();
  installerRun?.kill('SIGTERM');
  const installerLog = ((await installerRun)?.all ?? '').split('\n');
  const count = (text: string) => installerLog.filter((line) => line.includes(text)).length;
  show(`installer stopped: it answered ${count('"msg":"request"')} typed requests and checked ${count('deploy checked against the signed metadata')} deploys against the signed metadata itself`);

  heading('The update outcomes with stable journal MESSAGE_IDs (under systemd: journalctl MESSAGE_ID=…)');
  const logged = await outcomes();
  show(logged.map((r) => `MESSAGE_ID=${r.messageId}  ${r.msg}${r.version === undefined ? '' : ` (release ${String(r.version)})`}${r.code === undefined ? '' : ` ${String(r.code)}`}`).join('\n'));
  const rolledBack = logged.find((r) => r.msg.includes('rolled back'));
  if (rolledBack) show(`the journal entry for the first rollback, as sent to journald's native socket:\n${journalEntry(rolledBack)}`);
}

async function teardown(): Promise<void> {
  running?.kill('SIGKILL');
  await running?.catch(() => undefined);
  await broker?.stop();
  await ssh?.close();
  device?.cleanup();
  await ota?.close();
}

try {
  await main();
  heading('Done: world torn down');
} catch (err) {
  process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await teardown();
}
