/**
 * The update path's reach into the system: OSTree and the bootloader. The steps and the service
 * use only this port; it is either local (the process is root and runs ostree itself: tests, the
 * demo, a single-process install) or the installer's socket (installer/client.ts), which runs
 * the same local adapters as root on the agent's behalf.
 */
import type { UpdateConfig } from '../config/index.js';
import type { Logger } from '../logs/index.js';
import type { Exec } from '../platform/index.js';
import { createBoot, type BootBackend } from './boot/index.js';
import { createOstree, type Ostree } from './ostree.js';

/** The Installer port. */
export interface UpdateHost {
  ostree: Ostree;
  boot: BootBackend;
}

/** What the local adapters need. */
export interface LocalHostOptions {
  config: UpdateConfig;
  stateDir: string;
  exec: Exec;
  log: Logger;
  /** The simulated backend's reboot: stop the daemon; its harness starts it again. */
  onSimulatedReboot: (reason: string) => void;
}

/** OSTree and the configured bootloader, run by this process. */
export function localHost(options: LocalHostOptions): UpdateHost {
  const { config, exec, log } = options;
  let boot: BootBackend | undefined;
  const ostree = createOstree({
    exec,
    log: log.child('ostree'),
    sysroot: config.sysroot,
    osname: config.osname,
    bootedHint: config.boot.backend === 'simulated' ? async () => {
      const commit = await boot?.bootedCommit();
      return commit ? { commit } : null;
    } : undefined,
  });
  boot = createBoot({
    config,
    stateDir: options.stateDir,
    exec,
    flush: async () => void (await ostree.flushBoot()),
    menu: async () => (await ostree.deployments()).map((d) => d.commit),
    onSimulatedReboot: options.onSimulatedReboot,
  });
  return { ostree, boot };
}
