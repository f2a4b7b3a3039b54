/**
 * A simulated bootloader and reboot for the demo and for tests that cannot reboot the host.
 * Same contract as GRUB's counter (boot/boot.ts); its state lives in one JSON file.
 *
 * `reboot()` records the request and calls `onReboot` (the daemon stops and exits); the harness
 * starts `outpost run` again, and `boot()` — called once at start — plays the bootloader: the
 * default deployment boots, unless it is armed for trial and listed in `neverBoots` (a release
 * that "panics"), in which case the counter runs down and the previous deployment boots. Like
 * GRUB's script, the counter counts only boots whose default is the commit it was armed for.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { writeFileAtomic } from '../../platform/index.js';
import type { Boot, ResetCause, TrialState } from './boot.js';

const stateSchema = z.strictObject({
  bootId: z.string(),
  bootedCommit: z.string().nullable(),
  rebootPending: z.boolean(),
  /** `commit`: what the counter counts (null: armed by an outpost that did not say; counts any default). */
  trial: z.strictObject({ armed: z.boolean(), remaining: z.number().int().nullable(), commit: z.string().nullable().default(null) }),
  /** Commits whose boot "fails" before userspace (kernel panic stand-in). */
  neverBoots: z.array(z.string()),
  boots: z.number().int(),
  /** Why the current boot began (simulateReset says; a requested reboot is `unknown`). */
  resetCause: z.enum(['watchdog', 'unknown']).default('unknown'),
});
type SimState = z.infer<typeof stateSchema>;

/** Settings of the simulated backend. */
export interface SimulatedBootOptions {
  stateFile: string;
  trialBoots: number;
  /** Commits in the bootloader's menu order: default first, then the fallback. */
  menu: () => Promise<string[]>;
  /** Called after a reboot was requested; the daemon should stop and exit. */
  onReboot: (reason: string) => void;
}

async function load(file: string): Promise<SimState> {
  try {
    return stateSchema.parse(JSON.parse(await readFile(file, 'utf8')));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return { bootId: randomUUID(), bootedCommit: null, rebootPending: true, trial: { armed: false, remaining: null, commit: null }, neverBoots: [], boots: 0, resetCause: 'unknown' };
  }
}

const save = (file: string, state: SimState) => writeFileAtomic(file, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });

/** Plays the bootloader after a simulated reboot; returns what booted. Idempotent within a boot. */
async function playBootloader(options: SimulatedBootOptions, state: SimState): Promise<SimState> {
  if (!state.rebootPending) return state;
  const menu = await options.menu();
  let next = { ...state, rebootPending: false, bootId: randomUUID(), boots: state.boots + 1 };
  for (;;) {
    const countsThisDefault = next.trial.commit === null || next.trial.commit === menu[0];
    const armed = next.trial.armed && next.trial.remaining !== null && countsThisDefault;
    const remaining = next.trial.remaining ?? 0;
    if (armed && remaining <= 0) {
      // Counter ran out: GRUB boots the fallback entry, the trial is over.
      return { ...next, bootedCommit: menu[1] ?? menu[0] ?? null, trial: { ...next.trial, armed: false, remaining: -1 } };
    }
    if (armed) next = { ...next, trial: { ...next.trial, armed: true, remaining: remaining - 1 } };
    const candidate = menu[0] ?? null;
    if (candidate === null || !next.neverBoots.includes(candidate)) return { ...next, bootedCommit: candidate };
    if (!armed) return { ...next, bootedCommit: null };
  }
}

/** The simulated boot backend; call `boot()` once at daemon start. */
export function simulatedBoot(options: SimulatedBootOptions): Boot & { boot(): Promise<void> } {
  const { stateFile } = options;
  const update = async (change: (s: SimState) => SimState) => save(stateFile, change(await load(stateFile)));
  return {
    kind: 'simulated',
    boot: async () => {
      const state = await load(stateFile);
      await save(stateFile, await playBootloader(options, state));
    },
    bootId: async () => (await load(stateFile)).bootId,
    bootedCommit: async () => (await load(stateFile)).bootedCommit,
    resetCause: async () => (await load(stateFile)).resetCause,
    markTrial: (target) => update((s) => ({ ...s, trial: { armed: true, remaining: options.trialBoots, commit: target.commit } })),
    markGood: () => update((s) => ({ ...s, trial: { armed: false, remaining: null, commit: null } })),
    trialState: async (): Promise<TrialState> => {
      const { trial } = await load(stateFile);
      return { armed: trial.armed, remaining: trial.remaining, bootsUsed: trial.remaining === null ? null : options.trialBoots - trial.remaining };
    },
    reboot: async (reason) => {
      await update((s) => ({ ...s, rebootPending: true, resetCause: 'unknown' }));
      options.onReboot(reason);
    },
  };
}

/** Test and demo hook: makes `commit` fail to boot, as a kernel panic would. */
export async function simulateNeverBoots(stateFile: string, commit: string): Promise<void> {
  const state = await load(stateFile);
  await save(stateFile, { ...state, neverBoots: [...new Set([...state.neverBoots, commit])] });
}

/** Test and demo hook: a hardware reset (a watchdog firing, or power loss): the next start is a new boot. */
export async function simulateReset(stateFile: string, cause: ResetCause): Promise<void> {
  const state = await load(stateFile);
  await save(stateFile, { ...state, rebootPending: true, resetCause: cause });
}
