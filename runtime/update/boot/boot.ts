/**
 * The boot port: how outpost talks to the bootloader about trial boots, and how it reboots.
 *
 * Trial boot contract (greenboot's scheme on GRUB, bootcount/altbootcmd on U-Boot):
 * - `markTrial(target)` before the new deployment becomes the default arms the bootloader's
 *   counter; if the new system never reaches outpost, the bootloader itself falls back to the
 *   previous entry. The counter names what it counts (the boot config `target.bootVersion`, the
 *   simulated menu's `target.commit`): boots of any other default never count down, so a power cut
 *   before ostree's boot-config swap reached the disk cannot spend the old system's boots and fall
 *   back below it.
 * - `markGood()` after probation disarms it; until then every reboot counts down.
 * - Every write is flushed to disk before the call returns (DESIGN: power cut after a counter
 *   write must not brick the gateway).
 */

/** What the bootloader's trial state looks like now. */
export interface TrialState {
  /** True while a trial is armed and not yet blessed. */
  armed: boolean;
  /** Boots left before the bootloader falls back (GRUB boot_counter; U-Boot bootlimit - bootcount). */
  remaining: number | null;
  /** Boots into this trial so far, the running one included (0 right after `markTrial`); null when none was armed. */
  bootsUsed: number | null;
}

/** What a trial is for: the boot config that makes the new deployment the default. */
export interface TrialTarget {
  /** The OSTree commit on trial. */
  commit: string;
  /** OSTree's boot config version (`/boot/loader.N`) whose first entry is the trial deployment. */
  bootVersion: BootVersion;
}

/** OSTree alternates between two boot configs, `/boot/loader.0` and `/boot/loader.1`. */
export type BootVersion = 0 | 1;

/**
 * Why the running boot began, as far as the hardware can tell: `watchdog` when a hardware watchdog
 * reset the board (a hang), `unknown` for everything else (power on, power loss, a reboot).
 */
export type ResetCause = 'watchdog' | 'unknown';

/** The bootloader and reboot adapter. */
export interface Boot {
  readonly kind: BootBackendKind;
  /** An id that changes on every boot (kernel boot_id). */
  bootId(): Promise<string>;
  /** Arms the trial counter for boots of `target` (and only those). */
  markTrial(target: TrialTarget): Promise<void>;
  /** Blesses the running deployment: no more fallback. */
  markGood(): Promise<void>;
  trialState(): Promise<TrialState>;
  /** Why this boot began; decides whether a restart during a trial condemns the release. */
  resetCause(): Promise<ResetCause>;
  /** The OSTree commit that booted, or null when not known (not an OSTree boot). */
  bootedCommit(): Promise<string | null>;
  /** Asks the system to reboot; resolves when the request was accepted (the process ends soon after). */
  reboot(reason: string): Promise<void>;
}

/** The boot backends outpost knows; the registry in boot/index.ts must cover each. */
export type BootBackendKind = 'grub' | 'uboot' | 'simulated';
