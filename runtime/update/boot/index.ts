/** Boot port: trial boots and reboot, with one backend per bootloader (registry below). */
export type { Boot, BootBackendKind, BootVersion, ResetCause, TrialState, TrialTarget } from './boot.js';
export { grubBoot, parseEnvList, type GrubBootOptions } from './grub.js';
export { ubootBoot, type UbootBootOptions } from './uboot.js';
export { simulatedBoot, simulateNeverBoots, simulateReset, type SimulatedBootOptions } from './simulated.js';
export { watchdogResetCause } from './system.js';
export { createBoot, type BootBackend, type BootContext } from './registry.js';
