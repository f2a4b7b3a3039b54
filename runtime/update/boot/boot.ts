/**
 * The boot port: how outpost talks to the bootloader about trial boots, and how it reboots.
 *
 * Trial boot contract (greenboot's scheme on GRUB, bootcount/altbootcmd on U-Boot):
 * - `markTrial()` before the reboot into a new deployment arms the bootloader's counter; if the
 *   new system never reaches outpost, the bootloader itself falls back to the previous entry.
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
  /** Arms the trial counter for the next boot. */
  markTrial(): Promise<void>;
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
