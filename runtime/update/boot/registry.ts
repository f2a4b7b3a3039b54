/** Picks the boot backend named in the config (STYLE 4: one entry per kind, checked by the compiler). */
import { join } from 'node:path';
import type { UpdateConfig } from '../../config/index.js';
import type { Exec } from '../../platform/index.js';
import type { Boot, BootBackendKind } from './boot.js';
import { grubBoot } from './grub.js';
import { simulatedBoot } from './simulated.js';
import { ubootBoot } from './uboot.js';

/** What every backend factory may use. */
export interface BootContext {
  config: UpdateConfig;
  stateDir: string;
  exec: Exec;
  flush: () => Promise<void>;
  /** Commits in boot menu order (the simulated bootloader reads the deployments). */
  menu: () => Promise<string[]>;
  /** The simulated backend's "reboot": the daemon stops and its harness starts it again. */
  onSimulatedReboot: (reason: string) => void;
}

/** A boot backend plus the hook to run once at daemon start (the simulated bootloader plays its part then). */
export type BootBackend = Boot & { atStart(): Promise<void> };

const backends: { readonly [K in BootBackendKind]: (ctx: BootContext) => BootBackend } = {
  grub: (ctx) => ({ ...grubBoot({ exec: ctx.exec, envFile: ctx.config.boot.grubEnvFile, trialBoots: ctx.config.boot.trialBoots, flush: ctx.flush }), atStart: async () => undefined }),
  uboot: (ctx) => ({ ...ubootBoot({ exec: ctx.exec, fwEnvConfig: ctx.config.boot.fwEnvConfig, trialBoots: ctx.config.boot.trialBoots, flush: ctx.flush }), atStart: async () => undefined }),
  simulated: (ctx) => {
    const sim = simulatedBoot({
      stateFile: ctx.config.boot.simulatedStateFile ?? join(ctx.stateDir, 'simulated-boot.json'),
      trialBoots: ctx.config.boot.trialBoots,
      menu: ctx.menu,
      onReboot: ctx.onSimulatedReboot,
    });
    return { ...sim, atStart: () => sim.boot() };
  },
};

/** The configured boot backend. */
export function createBoot(ctx: BootContext): BootBackend {
  return backends[ctx.config.boot.backend](ctx);
}
