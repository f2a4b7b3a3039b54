/**
 * U-Boot trial boots: `upgrade_available=1` makes U-Boot count boots in `bootcount`; past
 * `bootlimit` it runs `altbootcmd` (the previous deployment). `fw_setenv` writes the redundant
 * env copies; /boot (or the env partition) is flushed after every write.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Boot, TrialState } from './boot.js';
import { parseEnvList, trialLoaderVar } from './grub.js';
import { readBootedCommit } from '../booted-commit.js';
import { kernelBootId, type Exec } from '../../platform/index.js';
import { systemdReboot, watchdogResetCause } from './system.js';

/** Settings of the U-Boot backend. */
export interface UbootBootOptions {
  exec: Exec;
  /** fw_env.config describing where the environment lives. */
  fwEnvConfig: string;
  trialBoots: number;
  flush: () => Promise<void>;
  bootIdPath?: string;
  /** sysfs watchdog class, for the reset cause; tests point it at a fake tree. */
  watchdogClassDir?: string;
}

/** The U-Boot boot backend. */
export function ubootBoot(options: UbootBootOptions): Boot {
  const { exec } = options;
  // libubootenv's fw_setenv reads `key=value` lines from a script file (not a pipe); one script
  // is one env write, so the redundant copies never disagree about a half-applied change.
  const script = async (lines: string[]) => {
    const dir = await mkdtemp(join(tmpdir(), 'outpost-fwenv-'));
    try {
      const file = join(dir, 'script');
      await writeFile(file, `${lines.join('\n')}\n`);
      await exec.run('fw_setenv', ['-c', options.fwEnvConfig, '-s', file], { timeoutMs: 30_000 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };
  return {
    kind: 'uboot',
    bootId: () => kernelBootId(options.bootIdPath),
    markTrial: async (target) => {
      // The boot script counts only when it loads /boot/loader.<outpost_trial_loader> (see grub.ts).
      await script(['upgrade_available=1', 'bootcount=0', `bootlimit=${options.trialBoots}`, `${trialLoaderVar}=${target.bootVersion}`]);
      await options.flush();
    },
    markGood: async () => {
      // An empty value deletes the variable.
      await script(['upgrade_available=0', 'bootcount=0', `${trialLoaderVar}=`]);
      await options.flush();
    },
    trialState: async (): Promise<TrialState> => {
      const env = parseEnvList((await exec.run('fw_printenv', ['-c', options.fwEnvConfig], { timeoutMs: 30_000 })).stdout);
      const armed = env.get('upgrade_available') === '1';
      const limit = Number(env.get('bootlimit') ?? options.trialBoots);
      const count = Number(env.get('bootcount') ?? 0);
      return { armed, remaining: armed ? Math.max(0, limit - count) : null, bootsUsed: armed ? count : null };
    },
    bootedCommit: () => readBootedCommit(),
    resetCause: () => watchdogResetCause(options.watchdogClassDir),
    reboot: (reason) => systemdReboot(exec, reason),
  };
}
