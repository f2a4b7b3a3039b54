/**
 * Restarting a systemd unit for `restart-service`: the port the handler uses and its local
 * adapter (systemctl through Exec), which the installer runs as root on the agent's behalf, or
 * the daemon itself when it has no installer (it is root then).
 *
 * Invariants:
 * - Only a unit on the allow-list (`commands.restartUnits`) of the process that runs systemctl is
 *   restarted: the agent's check gives the sender a clear refusal; the installer's, against its
 *   own config (the image's, never the agent's overlay), holds when the agent is compromised.
 * - No shell: the unit is one argv element after `--` and matches `unitNameSchema`.
 * - Bounded: systemctl waits for the restart job, for at most {@link restartTimeoutMs}; past it
 *   systemctl is killed (the job itself stays queued in systemd) and the error is transient.
 */
import { unitNameSchema } from '../config/index.js';
import { OutpostError } from '../errors.js';
import type { Exec } from '../platform/index.js';

/** The port `restart-service` runs through. */
export interface UnitControl {
  restart(unit: string): Promise<void>;
}

/**
 * How long systemctl may wait for a restart job: below the installer client's 60 s for a change,
 * so a slow unit is reported as systemctl's timeout, not as the installer not answering.
 */
export const restartTimeoutMs = 45_000;

/** `systemctl restart -- <unit>`, run by this process. */
export function localUnits(exec: Exec): UnitControl {
  return {
    async restart(unit) {
      if (!unitNameSchema.safeParse(unit).success) throw new OutpostError('INTERNAL', `not a unit name: ${JSON.stringify(unit).slice(0, 100)}`);
      await exec.run('systemctl', ['restart', '--', unit], { timeoutMs: restartTimeoutMs, stdout: 'discard' });
    },
  };
}

/** Whether `unit` is on `allowed`: names compare exactly, as systemd's do. */
export function restartAllowed(unit: string, allowed: readonly string[]): boolean {
  return allowed.includes(unit);
}
