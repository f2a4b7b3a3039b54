/**
 * Scenarios 2, 3 and 4 on one gateway (3 and 4 need release 2 committed first, so they share it):
 * 2. outpostctl signs release 2 with a static delta from v1; the device fetches it through the
 *    forwarded HTTP port, deploys, reboots through systemd, GRUB boots v2 on trial, probation
 *    passes, outpost commits. Then: v2 booted, v1 the rollback, the broker's retained state says 2.
 * 3. release 3 boots but its health check fails: probation fails, outpost rolls back to v2 on its
 *    own and says why, with the broker down the whole time;
 * 4. release 4 never reaches userspace (PID 1 exits -> panic -> reboot): GRUB's counter runs out
 *    and it boots v2; outpost reports the fallback and does not try release 4 again within its
 *    backoff (with no watchdog reset it may have been power loss: deferred, 3 trials in all).
 * Between 2 and 3: the default entry's boot link is removed with a trial armed (the brick the
 * power-cut review found): the initramfs' emergency mode reboots by itself until GRUB falls back;
 * then signed commands: a reboot back to release 2, and just-in-time SSH access (grant, a real
 * login from the host through a forwarded port, revoke ending an open session, a short grant
 * expiring by itself).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import t from 'tap';
import { bootedRelease, nextBoot, ostreeStatus, outpostReady, recordResult, scenario, settled, until, updateStatus, startUpdate } from './lib/scenario.js';
import type { Vm } from './lib/vm.js';
import { updateMessageIds } from '../../runtime/update/message-ids.js';
import { newCommand, signCommand } from '../../runtime/commands/index.js';
import { guest } from './lib/image.js';
import { freePort } from '../../scripts/world/mosquitto.js';

/** Trial boots the image's config gives a release (test/system/lib/image.ts). */
const trialBoots = 2;

async function update(vm: Vm, timeoutMs = 900_000): Promise<{ ms: number; status: Awaited<ReturnType<typeof updateStatus>> }> {
  const t0 = performance.now();
  const since = await vm.mark();
  await startUpdate(vm);
  // Every attempt reboots at least once; then wait until the machine is idle on a booted system.
  await nextBoot(vm, since, timeoutMs);
  const status = await settled(vm, timeoutMs);
  return { ms: Math.round(performance.now() - t0), status };
}

t.test('update v1 -> v2; bad release rolls back (broker down); never-booting release falls back in GRUB', async (t) => {
  const sshPort = await freePort();
  const { vm, world, image, dir } = await scenario(t, '02-update-rollback', { sshPort });
  const commits = image.commits;
  await vm.start();
  t.equal(await bootedRelease(vm), 1, 'boots release 1');

  // Scenario 2.
  let t0 = performance.now();
  await world.release(2, [1]);
  const releaseMs = Math.round(performance.now() - t0);
  const since2 = await vm.mark();
  t0 = performance.now();
  await startUpdate(vm);
  await vm.waitSerial(new RegExp(`RIG-GRUB boot_counter=${trialBoots - 1} default=0`), { since: since2, timeoutMs: 600_000 });
  const toRebootMs = Math.round(performance.now() - t0);
  await nextBoot(vm, since2);
  const s2 = await settled(vm);
  const cycleMs = Math.round(performance.now() - t0);
  t.equal(await bootedRelease(vm), 2, 'release 2 booted');
  t.match(s2.last, { result: 'committed', version: 2 }, 'outpost committed release 2');
  t.equal(s2.installedVersion, 2);
  t.ok(world.server.requests.some((r) => r.path.includes('/targets/deltas/') && r.status < 300), 'the static delta came over the forwarded HTTP port');
  const status2 = await ostreeStatus(vm);
  const lines = status2.split('\n').filter((l) => /^[* ] \S+ [0-9a-f]{64}\.\d/.test(l));
  t.match(lines[0], new RegExp(`^\\* \\S+ ${commits.get(2)}`), 'v2 is booted and the default');
  t.match(lines[1], new RegExp(`^  \\S+ ${commits.get(1)}`), 'v1 is the rollback');
  t.match(status2, /rollback/i);
  const env2 = await vm.sh('grub-editenv /boot/grub/grubenv list');
  t.match(env2, /boot_success=1/, 'trial marked good');
  t.notMatch(env2, /boot_counter/, 'boot counter cleared');
  const state2 = await until('retained state shows v2', async () => {
    const doc = await world.retainedState();
    return doc !== null && JSON.stringify(doc).includes('"installedVersion":2') ? doc : undefined;
  }, 60_000, 2000).catch((err: unknown) => (t.fail(String(err)), null));
  t.ok(state2, 'the host broker retained state shows release 2');
  await recordResult('update', { releaseSignMs: releaseMs, applyToTrialBootMs: toRebootMs, updateCycleMs: cycleMs, bootTimesMs: vm.bootTimesMs.slice(0, 2), deltaRequests: world.server.requests.filter((r) => r.path.includes('deltas')).length });

  // Emergency mode in the initramfs is no dead end: the brick the power-cut review found (the
  // default entry's /ostree/boot.N link gone) with a trial armed for it must reboot by itself
  // until GRUB's counter falls back (rd.emergency=reboot), not wait at a shell for 400 s.
  // Here, while release 1 is still the rollback entry; afterwards the link comes back.
  const loader = (await vm.sh('readlink /boot/loader')).trim().replace('loader.', '');
  const bootLink = (await vm.sh(`sed -n 's/^options .*ostree=\\([^ ]*\\).*/\\1/p' "$(grep -l '^version 2$' /boot/loader/entries/*.conf)"`)).trim();
  t.match(bootLink, new RegExp(`^/ostree/boot\\.${loader}/`), `the default entry boots ${bootLink}`);
  const t5 = performance.now();
  const since5 = await vm.mark();
  await vm.exec(`mount -o remount,rw /sysroot 2>/dev/null; mv /sysroot${bootLink} /sysroot${bootLink}.gone && grub-editenv /boot/grub/grubenv set boot_counter=${trialBoots} boot_success=0 outpost_trial_loader=${loader} && sync && systemctl reboot`, 30_000).catch(() => undefined);
  await vm.waitSerial(/RIG-GRUB boot_counter=-1 default=1/, { since: since5, timeoutMs: 600_000 });
  await nextBoot(vm, since5);
  const emergencyFallbackMs = Math.round(performance.now() - t5);
  const serial5 = await vm.serial(since5);
  t.equal((serial5.match(/Couldn.t find specified OSTree root/g) ?? []).length, trialBoots, `each of the ${trialBoots} trial boots failed in the initramfs and rebooted by itself`);
  t.equal(await bootedRelease(vm), 1, 'GRUB fell back to the rollback entry (release 1)');
  // The reboot back to release 2 is a signed remote command (issue 19): it reboots the guest once,
  // and the same command delivered again after the reboot (a redelivery, a replay) is answered
  // with its recorded result, with no second reboot.
  await vm.exec(`mount -o remount,rw /sysroot 2>/dev/null; mv /sysroot${bootLink}.gone /sysroot${bootLink} && grub-editenv /boot/grub/grubenv unset boot_counter outpost_trial_loader && grub-editenv /boot/grub/grubenv set boot_success=1 && sync`, 30_000);
  const operator = await world.addCommandIssuer(['reboot', 'diagnostics', 'grant-access', 'revoke-access']);
  await outpostReady(vm);
  t.equal((await vm.exec('outpost update check', 300_000)).rc, 0, 'the device learns the command issuer with its metadata');
  const rebootCommand = JSON.stringify(signCommand(newCommand({ issuer: operator.keyid, target: { device: guest.deviceId }, type: 'reboot', args: { delaySec: 2, reason: 'rig' }, validitySec: 1800 }), operator));
  const bootIdBefore = (await vm.sh('cat /proc/sys/kernel/random/boot_id')).trim();
  const since6 = await vm.mark();
  const rebootResult = world.command(rebootCommand, 600_000);
  await nextBoot(vm, since6);
  t.match(await rebootResult, { outcome: 'succeeded', output: { rebootInSec: 2 } }, 'the reboot command succeeded');
  const bootIdAfter = (await vm.sh('cat /proc/sys/kernel/random/boot_id')).trim();
  t.not(bootIdAfter, bootIdBefore, 'the command rebooted the guest');
  t.equal(await bootedRelease(vm), 2, 'release 2 boots again once its link is back');
  const repeated = await world.command(rebootCommand, 300_000);
  t.match(repeated, { id: JSON.parse(rebootCommand).signed.id, outcome: 'succeeded' }, 'the same command again: its result again');
  await new Promise((resolve) => setTimeout(resolve, 15_000));
  t.equal((await vm.sh('cat /proc/sys/kernel/random/boot_id')).trim(), bootIdAfter, 'and no second reboot');

  // Just-in-time SSH access (issue 19) on the booted gateway: the image's sshd with the shipped
  // drop-in, the installer writing outpost's key file, real logins from the host through qemu's
  // forwarded port, as an operator's would come in. The key pair is made on the host, so only its
  // public half travels.
  const tAccess = performance.now();
  const sshKey = join(dir, 'operator-ssh');
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'rig-operator', '-f', sshKey], { timeout: 30_000 });
  const publicKey = (await readFile(`${sshKey}.pub`, 'utf8')).trim();
  const sshArgs = ['-F', '/dev/null', '-p', String(sshPort), '-i', sshKey, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=30', 'gwops@127.0.0.1'];
  const login = async (remote = 'id') => {
    const r = await execa('ssh', [...sshArgs, remote], { reject: false, all: true, stdin: 'ignore', timeout: 90_000 });
    return { rc: r.exitCode ?? -1, out: r.timedOut ? `timed out after 90 s: ${r.all ?? ''}` : (r.all ?? '') };
  };
  const sendCommand = async (type: 'grant-access' | 'revoke-access', args: Record<string, unknown>) => {
    const envelope = signCommand(newCommand({ issuer: operator.keyid, target: { device: guest.deviceId }, type, args, validitySec: 600 }), operator);
    const result = await world.command(JSON.stringify(envelope), 120_000);
    if (result === null) throw new Error(`no result for ${type} within 120 s`);
    return result;
  };
  const keyLines = async () => (await vm.sh('cat /etc/ssh/outpost-keys/gwops 2>/dev/null || true')).split('\n').filter((l) => l.includes('outpost-grant:'));
  // "Permission denied": sshd is up and refuses the key, not merely unreachable.
  const refused = /Permission denied \(publickey/;
  const before = await login();
  t.ok(before.rc !== 0 && refused.test(before.out), `sshd refuses gwops before any grant (rc ${before.rc}: ${before.out.trim()})`);
  const granted = await sendCommand('grant-access', { publicKey, principal: 'gwops', durationSec: 600 });
  t.match(granted, { outcome: 'succeeded', output: { grantId: granted.id, fingerprint: /^SHA256:/ } }, `grant-access succeeded: ${granted.message}`);
  t.match(await keyLines(), [/^expiry-time="\d{14}Z",restrict,pty ssh-ed25519 \S+ outpost-grant:/], "the grant is a line of outpost's key file");
  const during = await login();
  t.equal(during.rc, 0, `ssh -p ${sshPort} gwops@127.0.0.1 id from the host logs in during the grant: ${during.out.trim()}`);
  t.match(during.out, /uid=\d+\(gwops\).*\(outpost-access\)/, 'as the principal, a member of outpost-access');
  // An open session: the revoke must end it too, since sshd checks keys only at login.
  const session = execa('ssh', [...sshArgs, 'sleep 600'], { reject: false, all: true, stdin: 'ignore', timeout: 300_000 });
  const sessionUp = await until('the open session of gwops', async () => ((await vm.exec('pgrep -u gwops -x sleep')).rc === 0 ? true : undefined), 60_000, 1000).catch(() => false);
  t.ok(sessionUp, 'an ssh session of gwops from the host is open');
  const revoked = await sendCommand('revoke-access', { grantId: granted.id });
  t.match(revoked, { outcome: 'succeeded', output: { revoked: [granted.id] } }, `revoke-access ended the grant: ${revoked.message}`);
  const sessionGone = await until('no process of gwops', async () => ((await vm.exec('pgrep -u gwops')).rc === 1 ? true : undefined), 30_000, 1000).catch(() => false);
  t.ok(sessionGone, 'the revoke ended the open session (no process of gwops left)');
  const sessionEnd = await Promise.race([session, new Promise<null>((resolve) => setTimeout(resolve, 30_000, null))]);
  t.ok(sessionEnd !== null, `and the host's ssh with it (rc ${sessionEnd?.exitCode}: ${sessionEnd?.all?.trim()})`);
  t.same(await keyLines(), [], 'the key is gone from the file');
  const afterRevoke = await login();
  t.ok(afterRevoke.rc !== 0 && refused.test(afterRevoke.out), `the login is refused after the revoke (rc ${afterRevoke.rc}: ${afterRevoke.out.trim()})`);
  // Expiry without a revoke: a short grant ends by itself, not before its expiresAt.
  const short = await sendCommand('grant-access', { publicKey, principal: 'gwops', durationSec: 30 });
  t.match(short, { outcome: 'succeeded' }, `a 30 s grant-access succeeded: ${short.message}`);
  const expiresAt = Date.parse(String((short.output as { expiresAt?: string } | undefined)?.expiresAt));
  const shortLogin = await login('true');
  t.equal(shortLogin.rc, 0, `the login works during the 30 s grant: ${shortLogin.out.trim()}`);
  const expired = await until('the login refused after the expiry', async () => {
    const r = await login('true');
    return r.rc !== 0 ? r : undefined;
  }, 120_000, 3000).catch((err: unknown) => (t.fail(String(err)), null));
  const guestNowMs = Number((await vm.sh('date +%s%3N')).trim());
  t.ok(expired !== null && refused.test(expired.out), `the login is refused once the grant expired: ${expired?.out.trim()}`);
  // Both from the guest's clock; sshd's expiry-time= is expiresAt rounded down to the second.
  t.ok(guestNowMs >= expiresAt - 2000, `not before the grant's expiresAt (guest clock ${new Date(guestNowMs).toISOString()}, expiresAt ${new Date(expiresAt).toISOString()})`);
  t.same(await keyLines(), [], 'the expired key is gone from the file');
  t.comment(`just-in-time access on the gateway: ${Math.round(performance.now() - tAccess)} ms`);

  // Scenario 3: health check of release 3 fails; the broker is down for the whole attempt.
  await world.broker.stop();
  await world.release(3, [2]);
  const since3 = await vm.mark();
  const v3 = await update(vm);
  // settled() waits through the probation and the rollback reboot: idle means finished.
  const s3 = v3.status;
  t.equal(await bootedRelease(vm), 2, 'back on release 2');
  t.match(s3.last, { result: 'rolledBack', version: 3 }, 'outpost rolled release 3 back');
  t.match(String((s3.last as { reason?: string }).reason), /rig-health|health/, `reason names the failed check: ${(s3.last as { reason?: string }).reason}`);
  const serial3 = await vm.serial(since3);
  t.equal((serial3.match(/RIG-BOOTED release=3/g) ?? []).length, 1, 'release 3 was booted exactly once');
  const env3 = await vm.sh('grub-editenv /boot/grub/grubenv list');
  t.notMatch(env3, /boot_counter/, 'no trial armed after the rollback');
  // The outcome is a journal entry with its stable MESSAGE_ID (native protocol, from the agent's sandbox).
  const entries = (await vm.sh(`journalctl -b -o json --no-pager MESSAGE_ID=${updateMessageIds.rolledBack}`)).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(entries.find((e) => e.OUTPOST_VERSION === '3'), { _SYSTEMD_UNIT: 'outpost.service', PRIORITY: '4', SYSLOG_IDENTIFIER: 'outpost', OUTPOST_COMMIT: commits.get(3) }, `journalctl MESSAGE_ID=${updateMessageIds.rolledBack} finds the rollback of release 3`);
  await world.broker.start();
  const state3 = await until('retained state reports the rollback', async () => {
    const doc = await world.retainedState();
    return doc !== null && /rolledBack/.test(JSON.stringify(doc)) ? doc : undefined;
  }, 90_000, 3000).catch(() => null);
  t.ok(state3, 'after the broker is back, the retained state reports the rollback');

  // Scenario 4: release 4's PID 1 exits at once; only GRUB can bring the gateway back.
  await world.release(4, [2]);
  const since4 = await vm.mark();
  const t4 = performance.now();
  await startUpdate(vm);
  await vm.waitSerial(/Kernel panic|Attempted to kill init/, { since: since4, timeoutMs: 600_000 });
  await vm.waitSerial(/RIG-GRUB boot_counter=-1 default=1/, { since: since4, timeoutMs: 300_000 });
  await nextBoot(vm, since4);
  const s4 = await settled(vm);
  const fallbackMs = Math.round(performance.now() - t4);
  t.equal(await bootedRelease(vm), 2, 'GRUB fell back to release 2');
  t.match(s4.last, { result: 'rolledBack', version: 4 }, 'outpost reports release 4 as rolled back');
  t.match(String((s4.last as { reason?: string }).reason), /never came up/, 'reason: never came up');
  // A panic reboot is no watchdog reset: as far as outpost can tell this may have been power loss,
  // so release 4 is deferred, not condemned at once (3 trials in all, with a backoff).
  t.match(String((s4.last as { reason?: string }).reason), /offered again in \d+ min \(trial 1 of 3\)/, 'deferred, and the status says when it comes back');
  // After the fallback nothing may point at release 4 any more: not the ostree default (a later
  // update would keep it as its fallback entry) and not GRUB's spent counter.
  const env4 = await vm.sh('grub-editenv /boot/grub/grubenv list');
  t.notMatch(env4, /boot_counter/, 'spent boot counter cleared');
  const dep4 = await vm.sh('ostree admin status');
  t.notMatch(dep4, new RegExp(String(commits.get(4))), 'the deployment that never came up is gone');
  // Not retried within its backoff: an explicit apply must not start release 4 again.
  const again = await vm.exec('outpost update apply');
  t.comment(`apply after fallback: rc=${again.rc} ${again.out.trim()}`);
  t.match(again.out, /release 4 is offered again in/, 'the apply says why not: release 4 waits out its backoff');
  await new Promise((r) => setTimeout(r, 5000));
  const after = await updateStatus(vm);
  t.equal(after.state, 'idle', 'no new attempt');
  const serialAll = await vm.serial(since4);
  const trials = (serialAll.match(/RIG-GRUB boot_counter=\d+ default=0/g) ?? []).length;
  t.equal(trials, trialBoots, `release 4 got exactly its ${trialBoots} trial boots`);

  await recordResult('rollback', { badReleaseRollbackMs: v3.ms, neverBootsFallbackMs: fallbackMs, emergencyFallbackMs, bootTimesMs: vm.bootTimesMs });
});
