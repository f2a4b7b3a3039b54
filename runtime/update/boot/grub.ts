/**
 * GRUB trial boots with greenboot's variables in grubenv: `boot_counter` (decremented by the GRUB
 * script on each boot; at 0 it boots the fallback entry) and `boot_success` (set to 1 once the
 * system is known good). grub-editenv rewrites the 1 KiB env block in place; /boot is flushed
 * after every write because GRUB reads it without replaying a journal.
 *
 * `outpost_trial_loader` names the boot config the trial belongs to; the image's grub.cfg counts
 * only when it equals `outpost_loader`, which each generated `loader.N/grub.cfg` sets to N
 * (test/system/image/grub.cfg is the reference script).
 */
import type { Boot, TrialState } from './boot.js';
import { readBootedCommit } from '../booted-commit.js';
import { kernelBootId, type Exec } from '../../platform/index.js';
import { systemdReboot, watchdogResetCause } from './system.js';

/** Settings of the GRUB backend. */
export interface GrubBootOptions {
  exec: Exec;
  /** grubenv path, e.g. /boot/grub/grubenv. */
  envFile: string;
  /** How many boots the new deployment gets before GRUB falls back. */
  trialBoots: number;
  /** Makes /boot durable (FIFREEZE/FITHAW); called after every env write. */
  flush: () => Promise<void>;
  bootIdPath?: string;
  /** sysfs watchdog class, for the reset cause; tests point it at a fake tree. */
  watchdogClassDir?: string;
}

/** grubenv variable naming the boot config whose boots the trial counter counts. */
export const trialLoaderVar = 'outpost_trial_loader';
/** grubenv variable holding how many boots the trial was armed with. */
const trialBootsVar = 'outpost_trial_boots';

/** Parses `grub-editenv list` output (`key=value` lines). */
export function parseEnvList(text: string): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) env.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return env;
}

/** The GRUB boot backend. */
export function grubBoot(options: GrubBootOptions): Boot {
  const { exec, envFile } = options;
  const editenv = async (...args: string[]) => (await exec.run('grub-editenv', [envFile, ...args], { timeoutMs: 30_000 })).stdout;
  return {
    kind: 'grub',
    bootId: () => kernelBootId(options.bootIdPath),
    markTrial: async (target) => {
      // One grub-editenv call writes all three in one rewrite of the env block.
      // The armed count goes along: the config may change before the trial is judged.
      await editenv('set', `boot_counter=${options.trialBoots}`, 'boot_success=0', `${trialLoaderVar}=${target.bootVersion}`, `${trialBootsVar}=${options.trialBoots}`);
      await options.flush();
    },
    markGood: async () => {
      await editenv('set', 'boot_success=1');
      await editenv('unset', 'boot_counter', trialLoaderVar, trialBootsVar);
      await options.flush();
    },
    trialState: async (): Promise<TrialState> => {
      const env = parseEnvList(await editenv('list'));
      const counter = env.get('boot_counter');
      const armed = counter !== undefined && env.get('boot_success') !== '1';
      const remaining = counter === undefined ? null : Number(counter);
      const armedBoots = Number(env.get(trialBootsVar) ?? options.trialBoots);
      return { armed, remaining, bootsUsed: remaining === null ? null : armedBoots - remaining };
    },
    bootedCommit: () => readBootedCommit(),
    resetCause: () => watchdogResetCause(options.watchdogClassDir),
    reboot: (reason) => systemdReboot(exec, reason),
  };
}
