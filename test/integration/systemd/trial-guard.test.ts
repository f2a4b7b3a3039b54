/**
 * The trial guard (systemd/outpost-trial-guard + its unit) run for real against real bootloader
 * environments: a grubenv written by grub-editenv and a U-Boot env image read by fw_printenv.
 * The variables are set with those tools as the bootloader contract defines them (greenboot's
 * boot_counter/boot_success, U-Boot's upgrade_available/bootcount/bootlimit), not through
 * outpost's boot backends: the guard has to agree with the bootloader, whatever outpost's code
 * does. Only `systemctl` is a stub: the real `systemctl reboot` would reboot the test host (or fail
 * where systemd is not PID 1), so a script on PATH records each call and the uptime it came at.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { until } from '../../../scripts/world/until.js';

const script = fileURLToPath(new URL('../../../systemd/outpost-trial-guard', import.meta.url));
const unitText = readFileSync(new URL('../../../systemd/outpost-trial-guard.service', import.meta.url), 'utf8');
const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

function uptimeSec(): number {
  return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

/** A deadline (seconds after boot, what OUTPOST_TRIAL_GUARD_SEC takes) `sec` from now, give or take the current second. */
function deadlineIn(sec: number): number {
  return Math.floor(uptimeSec()) + sec;
}

interface Call {
  uptime: number;
  args: string;
}

interface Rig {
  dir: string;
  grubenv: string;
  fwEnvConfig: string;
  marker: string;
  /** Where outpost asks the guard for a later deadline (the rig passes it always: never the host's). */
  minFile: string;
  /** The systemctl invocations so far. */
  calls(): Call[];
  run(env?: Record<string, string>): ReturnType<typeof runGuard>;
}

function runGuard(bin: string, env: Record<string, string>) {
  // With the unit's UMask=0077, as systemd runs it.
  return execa('sh', ['-c', 'umask 077 && exec "$0"', script], { env: { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...env }, extendEnv: false, reject: false });
}

/** Resolves once a running guard says it waits on an armed, unblessed trial. */
async function waiting(guard: ReturnType<typeof runGuard>): Promise<void> {
  let stderr = '';
  guard.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  await until('guard waiting', () => (/armed and not blessed/.test(stderr) ? true : undefined), 10_000);
}

function makeRig(t: Test): Rig {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-guard-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const callLog = join(dir, 'systemctl.calls');
  // STUB_SYSTEMCTL_FAIL=1 refuses the orderly reboot, as a broken logind would.
  writeFileSync(
    join(bin, 'systemctl'),
    `#!/bin/sh\nread -r up _ </proc/uptime\nprintf '%s|%s\\n' "$up" "$*" >>'${callLog}'\ncase "$*" in *--force*) exit 0 ;; esac\nexit "\${STUB_SYSTEMCTL_FAIL:-0}"\n`,
    { mode: 0o755 },
  );
  const rig: Rig = {
    dir,
    grubenv: join(dir, 'boot', 'grubenv'),
    fwEnvConfig: join(dir, 'fw_env.config'),
    marker: join(dir, 'state', 'trial-guard.fired'),
    minFile: join(dir, 'state', 'trial-guard.min-sec'),
    calls: () =>
      existsSync(callLog)
        ? readFileSync(callLog, 'utf8').trim().split('\n').map((line) => ({ uptime: Number(line.split('|')[0]), args: line.slice(line.indexOf('|') + 1) }))
        : [],
    run: (env = {}) =>
      runGuard(bin, {
        OUTPOST_GRUBENV: rig.grubenv,
        OUTPOST_FW_ENV_CONFIG: rig.fwEnvConfig,
        OUTPOST_TRIAL_GUARD_MARKER: rig.marker,
        OUTPOST_TRIAL_GUARD_MIN_FILE: rig.minFile,
        OUTPOST_TRIAL_GUARD_POLL_SEC: '1',
        ...env,
      }),
  };
  mkdirSync(join(dir, 'boot'));
  return rig;
}

/** A GRUB environment and the writes that arm and bless a trial (2 trial boots, like the system-test image). */
interface GrubEnv {
  arm(): Promise<void>;
  bless(): Promise<void>;
  /** What GRUB's 08_fallback_counting + 10_reset_boot_success leave in grubenv for the running boot. */
  booted(counter: number): Promise<void>;
}

async function grub(rig: Rig): Promise<GrubEnv> {
  const editenv = (...args: string[]) => execa('grub-editenv', [rig.grubenv, ...args]);
  await editenv('create');
  return {
    arm: async () => void (await editenv('set', 'boot_counter=2', 'boot_success=0')),
    bless: async () => {
      await editenv('set', 'boot_success=1');
      await editenv('unset', 'boot_counter');
    },
    booted: async (counter) => void (await editenv('set', `boot_counter=${counter}`, 'boot_success=0')),
  };
}

/** A U-Boot env image; `set` writes variables with the real fw_setenv. */
async function uboot(rig: Rig): Promise<{ set(...pairs: string[]): Promise<void> }> {
  writeFileSync(join(rig.dir, 'env.txt'), 'bootcmd=run ostree_boot\naltbootcmd=run ostree_rollback\n');
  await execa('mkenvimage', ['-s', '0x4000', '-o', join(rig.dir, 'env.bin'), join(rig.dir, 'env.txt')]);
  writeFileSync(rig.fwEnvConfig, `${join(rig.dir, 'env.bin')} 0x0000 0x4000\n`);
  return {
    set: async (...pairs) => {
      const script = join(rig.dir, 'fw_setenv.script');
      writeFileSync(script, `${pairs.join('\n')}\n`);
      await execa('fw_setenv', ['-c', rig.fwEnvConfig, '-s', script]);
    },
  };
}

function noReboot(t: Test, rig: Rig): void {
  t.same(rig.calls(), [], 'systemctl never called');
  t.notOk(existsSync(rig.marker), 'no marker');
}

t.test('--help describes the settings; unknown arguments are usage errors', async (t) => {
  const help = await execa(script, ['--help'], { reject: false });
  t.equal(help.exitCode, 0);
  t.match(help.stdout, /^Usage: outpost-trial-guard/);
  for (const name of ['OUTPOST_TRIAL_GUARD_SEC', 'OUTPOST_GRUBENV', 'OUTPOST_FW_ENV_CONFIG', 'OUTPOST_TRIAL_GUARD_MARKER']) t.match(help.stdout, name);
  t.equal((await execa(script, ['--frob'], { reject: false })).exitCode, 64);
});

t.test('GRUB, no trial armed: exits at once, no reboot, no marker', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  for (const [label, prepare] of [
    ['fresh grubenv', async () => undefined],
    ['armed, booted, blessed', async () => (await boot.arm(), await boot.booted(1), await boot.bless())],
  ] as const) {
    await prepare();
    const started = Date.now();
    const r = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadlineIn(600)) });
    t.equal(r.exitCode, 0, label);
    t.ok(Date.now() - started < 5000, `${label}: did not wait for the deadline`);
    t.match(r.stderr, /no unblessed trial .*nothing to guard/, label);
  }
  noReboot(t, rig);
});

t.test('GRUB, the counter already spent (boot_counter=-1, on the fallback): no reboot loop', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(-1);
  const r = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0' });
  t.equal(r.exitCode, 0);
  t.match(r.stderr, /already fallen back/);
  noReboot(t, rig);
});

t.test('GRUB, armed and blessed by outpost during the wait: no reboot', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(1);
  const deadline = deadlineIn(4);
  const guard = rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadline) });
  await waiting(guard);
  await boot.bless();
  const r = await guard;
  t.equal(r.exitCode, 0);
  t.match(r.stderr, /the trial ended \(grub boot_counter=\S+ boot_success=1\)/);
  t.ok(uptimeSec() < deadline + 1, 'left as soon as it saw the blessing');
  noReboot(t, rig);
});

t.test('outpost asks for a later deadline (a long probation window): the guard waits for it and sees the blessing', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(1);
  mkdirSync(join(rig.dir, 'state'), { recursive: true });
  writeFileSync(rig.minFile, `${deadlineIn(600)}\n`);
  // The unit's own deadline has passed already: without outpost's file this reboots at once.
  const guard = rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0' });
  await waiting(guard);
  await boot.bless();
  const r = await guard;
  t.equal(r.exitCode, 0);
  noReboot(t, rig);
});

t.test('the trial\'s own outpost asks for a later deadline after the guard started: the guard reads it again and waits', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(1);
  const guard = rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadlineIn(3)) });
  await waiting(guard);
  mkdirSync(join(rig.dir, 'state'), { recursive: true });
  writeFileSync(rig.minFile, `${deadlineIn(600)}\n`);
  // Past the unit's own deadline: read once at start, the guard would have rebooted by now.
  await new Promise((r) => setTimeout(r, 5000));
  await boot.bless();
  const r = await guard;
  t.equal(r.exitCode, 0);
  noReboot(t, rig);
});

t.test('GRUB, blessed and re-armed for the next update during the wait: no reboot mid-update', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(1);
  const guard = rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadlineIn(3)), OUTPOST_TRIAL_GUARD_POLL_SEC: '60' });
  await waiting(guard);
  // Both before the guard looks again (poll 60 s > deadline): it only sees the new counter.
  await boot.bless();
  await boot.arm();
  const r = await guard;
  t.equal(r.exitCode, 0);
  t.match(r.stderr, /re-armed .*boot_counter=1 .*boot_counter=2/);
  noReboot(t, rig);
});

t.test('GRUB, armed and still unblessed at the deadline: marker with the boot id, then systemctl reboot', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(1);
  const deadline = deadlineIn(2);
  const r = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadline) });
  t.equal(r.exitCode, 0, r.stderr);
  const reason = `trial boot still not blessed ${deadline}s after boot (grub boot_counter=1 boot_success=0)`;
  t.equal(readFileSync(rig.marker, 'utf8'), `${bootId} ${reason}\n`, 'one line: boot id and reason');
  t.same(readdirSync(join(rig.dir, 'state')), ['trial-guard.fired'], 'no temp file left behind');
  t.equal(statSync(rig.marker).mode & 0o777, 0o644, 'readable by outpost, which runs as its own user');
  const calls = rig.calls();
  t.same(calls.map((c) => c.args), [`reboot --no-block --message=outpost-trial-guard: ${reason}`]);
  t.ok((calls[0]?.uptime ?? 0) >= deadline, `rebooted at uptime ${calls[0]?.uptime}, not before the deadline ${deadline}`);
  t.match(r.stderr, /rebooting so the bootloader counts the trial down/);
});

t.test('armed for another boot config than this boot came from (power cut before the swap): the bootloader does not count it, no reboot', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  // outpost names the boot config it armed the counter for (runtime/update/boot/grub.ts).
  await execa('grub-editenv', [rig.grubenv, 'set', 'outpost_trial_loader=1']);
  const cmdline = join(rig.dir, 'cmdline');
  const booted = (n: number) => writeFileSync(cmdline, `BOOT_IMAGE=(hd0,msdos1)/ostree/outpost-abc/vmlinuz root=LABEL=root rw ostree=/ostree/boot.${n}/outpost/abc/0 panic=5\n`);

  booted(0);
  const old = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0', OUTPOST_TRIAL_GUARD_CMDLINE: cmdline });
  t.equal(old.exitCode, 0);
  t.match(old.stderr, /armed for boot config loader\.1 but this boot came from loader\.0/);
  noReboot(t, rig);

  booted(1);
  await boot.booted(1);
  const trial = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0', OUTPOST_TRIAL_GUARD_CMDLINE: cmdline });
  t.equal(trial.exitCode, 0);
  t.match(readFileSync(rig.marker, 'utf8'), /\(grub boot_counter=1 boot_success=0 outpost_trial_loader=1\)\n$/, 'a boot of the armed config is the trial');
  t.equal(rig.calls().length, 1);
});

t.test('GRUB, the orderly reboot refused: falls back to systemctl reboot --force', async (t) => {
  const rig = makeRig(t);
  const boot = await grub(rig);
  await boot.arm();
  await boot.booted(0);
  const r = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0', STUB_SYSTEMCTL_FAIL: '1' });
  t.equal(r.exitCode, 0);
  const calls = rig.calls().map((c) => c.args);
  t.equal(calls.length, 2);
  t.match(calls[0], /^reboot --no-block /);
  t.equal(calls[1], 'reboot --force');
  t.ok(existsSync(rig.marker));
});

t.test('an unreadable bootloader environment: exit 1, never a reboot on a guess', async (t) => {
  const rig = makeRig(t);
  const r = await rig.run({ OUTPOST_TRIAL_GUARD_BOOT: 'grub', OUTPOST_TRIAL_GUARD_SEC: '0' });
  t.equal(r.exitCode, 1);
  t.match(r.stderr, /cannot read the grub environment/);
  noReboot(t, rig);
  const none = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0' });
  t.equal(none.exitCode, 0, 'auto with neither environment present: nothing to guard');
  t.match(none.stderr, /no bootloader environment/);
});

t.test('U-Boot (fw_printenv on an env image): not armed, armed at the deadline, already fallen back', async (t) => {
  const rig = makeRig(t);
  const env = await uboot(rig);

  const idle = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadlineIn(600)) });
  t.equal(idle.exitCode, 0);
  t.match(idle.stderr, /no unblessed trial \(uboot upgrade_available=unset/);
  noReboot(t, rig);

  // Past bootlimit U-Boot runs altbootcmd: this boot is the fallback already.
  await env.set('upgrade_available=1', 'bootcount=3', 'bootlimit=2');
  const fellBack = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: '0' });
  t.equal(fellBack.exitCode, 0);
  t.match(fellBack.stderr, /already fallen back/);
  noReboot(t, rig);

  await env.set('bootcount=1');
  const deadline = deadlineIn(2);
  const armed = await rig.run({ OUTPOST_TRIAL_GUARD_SEC: String(deadline) });
  t.equal(armed.exitCode, 0, armed.stderr);
  t.equal(readFileSync(rig.marker, 'utf8'), `${bootId} trial boot still not blessed ${deadline}s after boot (uboot upgrade_available=1 bootcount=1 bootlimit=2)\n`);
  t.equal(rig.calls().length, 1);
  t.match(rig.calls()[0]?.args, /^reboot --no-block /);
});

/** systemd-analyze checks that ExecStart exists, so the copy points it at this checkout's script. */
function unitCopy(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'outpost-trial-guard.service');
  writeFileSync(file, unitText.replace('ExecStart=/usr/libexec/outpost-trial-guard', `ExecStart=${script}`));
  return file;
}

function directive(name: string): string[] {
  return unitText.split('\n').filter((l) => l.startsWith(`${name}=`)).map((l) => l.slice(name.length + 1));
}

t.test('the unit: verifies cleanly, starts at boot without holding it up, needs nothing of outpost', async (t) => {
  const verify = await execa('systemd-analyze', ['verify', unitCopy(t)], { reject: false });
  t.equal(verify.stderr, '', 'no warnings');
  t.equal(verify.exitCode, 0);
  t.same(directive('ExecStart'), ['/usr/libexec/outpost-trial-guard'], 'where test/system/lib/image.ts installs the script');
  t.same(directive('WantedBy'), ['multi-user.target']);
  t.same(directive('Type'), ['exec'], 'the wait does not delay boot completion');
  t.same(directive('EnvironmentFile'), ['-/etc/default/outpost-trial-guard']);
  t.notMatch(unitText, /^(Requires|Requisite|BindsTo|PartOf|After|Wants)=.*outpost\.service/m, 'independent of outpost.service');
  t.same(directive('CapabilityBoundingSet'), ['CAP_SYS_BOOT CAP_DAC_OVERRIDE'], 'reboot, and the agent\'s 0700 state dir (its min-sec file, the marker)');
  const security = await execa('systemd-analyze', ['security', '--offline=true', unitCopy(t)], { reject: false });
  const exposure = /Overall exposure level for \S+: ([\d.]+)/.exec(security.stdout)?.[1];
  t.ok(Number(exposure) <= 2.0, `exposure ${exposure} <= 2.0`);
});
