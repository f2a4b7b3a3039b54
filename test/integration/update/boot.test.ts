import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { grubBoot, ubootBoot, simulatedBoot, simulateNeverBoots, simulateReset, watchdogResetCause, type Boot } from '../../../runtime/update/boot/index.js';
import { createExec } from '../../../runtime/platform/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-boot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
const exec = createExec(silentLogger);
/** A trial for the boot config loader.1 whose default is commit 'v2'. */
const trial = { commit: 'v2', bootVersion: 1 } as const;

t.test('GRUB: markTrial arms greenboot boot_counter, markGood blesses; each write is flushed', async (t) => {
  const dir = tempDir(t);
  const envFile = join(dir, 'grubenv');
  await execa('grub-editenv', [envFile, 'create']);
  let flushes = 0;
  const boot = grubBoot({ exec, envFile, trialBoots: 3, flush: async () => void flushes++ });
  t.same(await boot.trialState(), { armed: false, remaining: null, bootsUsed: null });
  await boot.markTrial(trial);
  t.same(await boot.trialState(), { armed: true, remaining: 3, bootsUsed: 0 });
  const listed = (await execa('grub-editenv', [envFile, 'list'])).stdout;
  t.match(listed, /boot_counter=3/);
  t.match(listed, /boot_success=0/);
  t.match(listed, /outpost_trial_loader=1/, 'names the boot config GRUB may count');
  await boot.markGood();
  t.same(await boot.trialState(), { armed: false, remaining: null, bootsUsed: null });
  const blessed = (await execa('grub-editenv', [envFile, 'list'])).stdout;
  t.match(blessed, /boot_success=1/);
  t.notMatch(blessed, /outpost_trial_loader/);
  t.equal(flushes, 2);
});

t.test('GRUB: boots used count from what the trial was armed with, not from a config changed since', async (t) => {
  const dir = tempDir(t);
  const envFile = join(dir, 'grubenv');
  await execa('grub-editenv', [envFile, 'create']);
  await grubBoot({ exec, envFile, trialBoots: 3, flush: async () => undefined }).markTrial(trial);
  await execa('grub-editenv', [envFile, 'set', 'boot_counter=2']); // GRUB's first trial boot
  const afterConfigChange = grubBoot({ exec, envFile, trialBoots: 2, flush: async () => undefined });
  t.same(await afterConfigChange.trialState(), { armed: true, remaining: 2, bootsUsed: 1 });
});

t.test('U-Boot: upgrade_available/bootcount/bootlimit through fw_setenv on an env image', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'env.txt'), 'bootcmd=run ostree_boot\naltbootcmd=run ostree_rollback\n');
  await execa('mkenvimage', ['-s', '0x4000', '-o', join(dir, 'env.bin'), join(dir, 'env.txt')]);
  const fwEnvConfig = join(dir, 'fw_env.config');
  writeFileSync(fwEnvConfig, `${join(dir, 'env.bin')} 0x0000 0x4000\n`);
  let flushes = 0;
  const boot = ubootBoot({ exec, fwEnvConfig, trialBoots: 2, flush: async () => void flushes++ });
  await boot.markTrial(trial);
  t.same(await boot.trialState(), { armed: true, remaining: 2, bootsUsed: 0 });
  const env = (await execa('fw_printenv', ['-c', fwEnvConfig])).stdout;
  t.match(env, /upgrade_available=1/);
  t.match(env, /outpost_trial_loader=1/);
  t.match(env, /bootlimit=2/);
  t.match(env, /altbootcmd=run ostree_rollback/, 'existing variables kept');
  await boot.markGood();
  t.same(await boot.trialState(), { armed: false, remaining: null, bootsUsed: null });
  t.notMatch((await execa('fw_printenv', ['-c', fwEnvConfig])).stdout, /outpost_trial_loader/);
  t.equal(flushes, 2);
});

/** The contract every boot backend keeps (STYLE 9): armed after markTrial, disarmed after markGood, flushed each time. */
const backends: Record<string, (dir: string, flush: () => Promise<void>) => Promise<Boot>> = {
  grub: async (dir, flush) => {
    await execa('grub-editenv', [join(dir, 'grubenv'), 'create']);
    return grubBoot({ exec, envFile: join(dir, 'grubenv'), trialBoots: 3, flush });
  },
  uboot: async (dir, flush) => {
    writeFileSync(join(dir, 'env.txt'), 'bootcmd=boot\n');
    await execa('mkenvimage', ['-s', '0x4000', '-o', join(dir, 'env.bin'), join(dir, 'env.txt')]);
    writeFileSync(join(dir, 'fw_env.config'), `${join(dir, 'env.bin')} 0x0000 0x4000\n`);
    return ubootBoot({ exec, fwEnvConfig: join(dir, 'fw_env.config'), trialBoots: 3, flush });
  },
  simulated: async (dir, flush) => {
    const sim = simulatedBoot({ stateFile: join(dir, 'boot.json'), trialBoots: 3, menu: async () => ['v1'], onReboot: () => undefined });
    await sim.boot();
    return { ...sim, markTrial: async (target) => (await sim.markTrial(target), await flush()), markGood: async () => (await sim.markGood(), await flush()) };
  },
};

for (const [name, make] of Object.entries(backends)) {
  t.test(`boot port contract: ${name}`, async (t) => {
    let flushes = 0;
    const boot = await make(tempDir(t), async () => void flushes++);
    t.equal((await boot.trialState()).armed, false, 'not armed at first');
    await boot.markTrial(trial);
    t.same(await boot.trialState(), { armed: true, remaining: 3, bootsUsed: 0 }, 'armed with the configured boots');
    await boot.markGood();
    t.equal((await boot.trialState()).armed, false, 'disarmed once blessed');
    t.equal(flushes, 2, 'every write flushed');
    t.match(await boot.bootId(), /\S/, 'a boot id');
  });
}

t.test('simulated: a reboot boots the default deployment on trial, counting down', async (t) => {
  const dir = tempDir(t);
  const reasons: string[] = [];
  const boot = simulatedBoot({ stateFile: join(dir, 'boot.json'), trialBoots: 2, menu: async () => ['v2', 'v1'], onReboot: (r) => reasons.push(r) });
  await boot.boot();
  const firstBootId = await boot.bootId();
  t.equal(await boot.bootedCommit(), 'v2');
  await boot.markTrial(trial);
  await boot.reboot('deploy v2');
  t.same(reasons, ['deploy v2']);
  await boot.boot();
  t.not(await boot.bootId(), firstBootId, 'a new boot id after reboot');
  t.equal(await boot.bootedCommit(), 'v2');
  t.same(await boot.trialState(), { armed: true, remaining: 1, bootsUsed: 1 });
  const id = await boot.bootId();
  await boot.boot();
  t.equal(await boot.bootId(), id, 'boot() without a pending reboot changes nothing');
});

t.test('simulated: a release that never boots makes the bootloader fall back when the counter runs out', async (t) => {
  const dir = tempDir(t);
  const stateFile = join(dir, 'boot.json');
  const boot = simulatedBoot({ stateFile, trialBoots: 3, menu: async () => ['v4', 'v2'], onReboot: () => undefined });
  await simulateNeverBoots(stateFile, 'v4');
  await boot.markTrial({ commit: 'v4', bootVersion: 1 });
  await boot.reboot('deploy v4');
  await boot.boot();
  t.equal(await boot.bootedCommit(), 'v2', 'fell back to the previous deployment');
  t.same(await boot.trialState(), { armed: false, remaining: -1, bootsUsed: 4 }, 'the counter ran out');
});

t.test('simulated: the counter counts only boots of the commit it was armed for (a cut before the deploy made it the default)', async (t) => {
  const dir = tempDir(t);
  const menu = ['v2', 'v1'];
  const boot = simulatedBoot({ stateFile: join(dir, 'boot.json'), trialBoots: 2, menu: async () => menu, onReboot: () => undefined });
  await boot.boot();
  await boot.markTrial({ commit: 'v5', bootVersion: 0 });
  // Power lost three times before v5 ever became the default: v2 keeps booting, nothing is spent.
  for (let cut = 0; cut < 3; cut++) {
    await simulateReset(join(dir, 'boot.json'), 'unknown');
    await boot.boot();
    t.equal(await boot.bootedCommit(), 'v2', `cut ${cut + 1}: the installed release boots`);
  }
  t.same(await boot.trialState(), { armed: true, remaining: 2, bootsUsed: 0 }, 'no trial boot spent');
  menu.unshift('v5');
  await simulateReset(join(dir, 'boot.json'), 'unknown');
  await boot.boot();
  t.equal(await boot.bootedCommit(), 'v5');
  t.same(await boot.trialState(), { armed: true, remaining: 1, bootsUsed: 1 }, 'the first boot of v5 counts');
});

t.test('reset cause: a watchdog whose bootstatus has WDIOF_CARDRESET means the watchdog reset the board', async (t) => {
  const dir = tempDir(t);
  const classDir = join(dir, 'watchdog');
  t.equal(await watchdogResetCause(join(dir, 'no-such-class')), 'unknown', 'no watchdog class: unknown');
  const device = (name: string, bootstatus: string) => {
    mkdirSync(join(classDir, name), { recursive: true });
    writeFileSync(join(classDir, name, 'bootstatus'), bootstatus);
  };
  device('watchdog0', '0\n');
  t.equal(await watchdogResetCause(classDir), 'unknown', 'bootstatus 0: not a watchdog reset');
  device('watchdog1', '1\n'); // WDIOF_OVERHEAT alone is not a reset
  t.equal(await watchdogResetCause(classDir), 'unknown');
  device('watchdog2', '32\n');
  t.equal(await watchdogResetCause(classDir), 'watchdog', 'CARDRESET (32) on any device');
  const envFile = join(dir, 'grubenv');
  await execa('grub-editenv', [envFile, 'create']);
  const boot = grubBoot({ exec, envFile, trialBoots: 1, flush: async () => undefined, watchdogClassDir: classDir });
  t.equal(await boot.resetCause(), 'watchdog', 'the GRUB backend reads it from sysfs');
});

t.test('simulated: a reset keeps its cause for that boot; a requested reboot is not a watchdog reset', async (t) => {
  const dir = tempDir(t);
  const stateFile = join(dir, 'boot.json');
  const boot = simulatedBoot({ stateFile, trialBoots: 2, menu: async () => ['a'.repeat(64)], onReboot: () => undefined });
  await boot.boot();
  t.equal(await boot.resetCause(), 'unknown');
  await simulateReset(stateFile, 'watchdog');
  await boot.boot();
  t.equal(await boot.resetCause(), 'watchdog');
  await boot.reboot('update');
  await boot.boot();
  t.equal(await boot.resetCause(), 'unknown');
});
