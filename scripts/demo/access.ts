/**
 * The demo's just-in-time access part: a signed `grant-access` lets the operator's SSH key log in to
 * the device's sshd for a few seconds and ends by itself (key removed, the open session ended, an
 * event), and a second grant is ended early by `revoke-access`.
 */
import { basename } from 'node:path';
import { execa } from 'execa';
import type { Sshd, SshWorld } from '../world/sshd.js';
import { until } from '../world/until.js';
import { show } from './ui.js';

export interface AccessDemo {
  readonly ssh: SshWorld;
  readonly sshd: Sshd;
  /** Runs `outpostctl command send --wait` of `type` to the device with the operator's key: its output. */
  send(type: string, args: Record<string, unknown>): Promise<string>;
  /** mosquitto_sub's connection options (an observer's certificate). */
  readonly sub: readonly string[];
  readonly deviceId: string;
}

/** Short enough for the demo to wait it out, long enough to log in and open a session first. */
export const demoGrantSec = 10;

/** What the device's config needs for the demo's grants (`commands.access`). */
export function demoAccessConfig(ssh: SshWorld, sshd: Sshd): Record<string, unknown> {
  // loginPollSec 1: the access-login event comes while the demo is still looking.
  return { principals: [ssh.principal], keysDir: sshd.keysDir, maxDurationSec: 600, sshdPort: sshd.port, loginPollSec: 1 };
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export async function showAccess(demo: AccessDemo): Promise<void> {
  const { ssh, sshd } = demo;
  const prompt = (command: string) => `$ ssh -i ${basename(ssh.operatorKey)} -p ${sshd.port} ${ssh.principal}@127.0.0.1 ${command}`;
  const login = async (note = ''): Promise<string> => {
    const r = await ssh.login(sshd.port, 'echo "logged in as $(id -un)"');
    return `${prompt("'echo logged in as $(id -un)'")}${note}\n${r.exitCode === 0 ? r.stdout : `(exit ${r.exitCode}) ${r.stderr}`}`;
  };
  const events: string[] = [];
  const watcher = execa('mosquitto_sub', [...demo.sub, '-t', `outpost/v1/${demo.deviceId}/events`], { reject: false, buffer: false });
  watcher.stdout.on('data', (chunk: Buffer) => events.push(...chunk.toString().split('\n').filter((line) => line.includes('"type":"access-'))));
  /** The nth (from 1) event of `type`, as mosquitto_sub printed it. */
  const event = (type: string, nth = 1) => until(`the ${type} event`, () => events.filter((line) => line.includes(`"type":"${type}"`))[nth - 1], 15_000);
  const eventNote = (line: string) => `event (mosquitto_sub outpost/v1/${demo.deviceId}/events): ${line}`;
  const grant = async (durationSec: number): Promise<{ text: string; grantId: string; expiresAt: number }> => {
    const args = { publicKey: ssh.operatorPub.trim(), principal: ssh.principal, durationSec };
    const text = await demo.send('grant-access', args);
    // The result's first line is the outcome; its output (grantId, fingerprint, expiresAt) follows as JSON.
    const output = JSON.parse(text.slice(text.indexOf('\n') + 1)) as { grantId: string; expiresAt: string };
    const [keyType, , comment] = args.publicKey.split(' ');
    const shown = JSON.stringify({ ...args, publicKey: `${keyType ?? ''} … ${comment ?? ''}` });
    return { text: `$ outpostctl command send --device ${demo.deviceId} --type grant-access --args '${shown}' --key operator.key --wait\n${text}`, grantId: output.grantId, expiresAt: Date.parse(output.expiresAt) };
  };
  /** Against the grant's expiry, so an end by expiry and one by revoke read apart. */
  const endedAt = (expiresAt: number): string => {
    const ms = Date.now() - expiresAt;
    return ms > -1000 ? `at the grant's expiry (${ms < 0 ? '' : '+'}${seconds(ms)})` : `${seconds(-ms)} before the grant's expiry`;
  };
  try {
    // mosquitto_sub must be subscribed before the grant, or it misses the grant's events.
    await new Promise((resolve) => setTimeout(resolve, 500));
    show(`the device's sshd (127.0.0.1:${sshd.port}) reads AuthorizedKeysFile ${sshd.keysDir}/%u, which only outpost writes; ${ssh.principal} is an allowed principal`);
    show(await login('   (no grant yet)'));

    const first = await grant(demoGrantSec);
    show(first.text);
    show(await login());
    const open = ssh.session(sshd.port);
    show(`${prompt("'sleep 120' &")}   (a session left open across the expiry)`);
    show(eventNote(await event('access-login')));
    show(`… no command now: the grant runs out by itself`);
    await until('the open session ended', () => (open.ended() ? true : undefined), (demoGrantSec + 20) * 1000);
    show(`the open session was ended ${endedAt(first.expiresAt)} (ssh exit ${String(open.process.exitCode ?? open.process.signalCode)})`);
    show(eventNote(await event('access-expired')));
    show(await login('   (after the expiry)'));

    const second = await grant(demoGrantSec * 6);
    show(`a second grant, for ${demoGrantSec * 6} s, revoked well before its end:\n${second.text}`);
    const revokedSession = ssh.session(sshd.port);
    show(`${prompt("'sleep 120' &")}`);
    await event('access-login', 2);
    const revokeArgs = { grantId: second.grantId };
    show(`$ outpostctl command send --device ${demo.deviceId} --type revoke-access --args '${JSON.stringify(revokeArgs)}' --key operator.key --wait\n${await demo.send('revoke-access', revokeArgs)}`);
    await until('the revoked session ended', () => (revokedSession.ended() ? true : undefined), 10_000);
    show(`the open session was ended ${endedAt(second.expiresAt)}`);
    show(eventNote(await event('access-revoked')));
    show(await login('   (after the revoke)'));
  } finally {
    watcher.kill('SIGTERM');
    await watcher;
  }
}
