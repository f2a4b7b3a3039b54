/**
 * `restart-service {unit}`: restarts one systemd unit listed in `commands.restartUnits`, through
 * the installer when there is one (a typed request, never a shell), else with systemctl here.
 *
 * A unit off the list fails the args schema, so the sender gets `bad-args` naming `unit` and the
 * command is never recorded as started: the list is this device's config, known at verification.
 * The installer checks its own copy of the list again (commands/units.ts). outpost's own unit
 * does not belong on the list: the restart would stop the daemon while the command runs, and it
 * would be reported `interrupted`; `set-config` restarts the daemon itself.
 */
import { z } from 'zod';
import { unitNameSchema } from '../../config/index.js';
import type { CommandHandler } from '../service.js';
import { restartAllowed, restartTimeoutMs, type UnitControl } from '../units.js';

/** The args schema for this device's allow-list. */
export function restartServiceArgs(allowed: readonly string[]) {
  return z.strictObject({
    unit: unitNameSchema.refine((unit) => restartAllowed(unit, allowed), {
      message: allowed.length === 0 ? 'not in commands.restartUnits, which is empty on this device' : `not in commands.restartUnits (${allowed.join(', ')})`,
    }),
  });
}

export function restartServiceHandler(allowed: readonly string[], units: UnitControl): CommandHandler<{ unit: string }> {
  return {
    args: restartServiceArgs(allowed),
    // systemctl's own limit plus the way to and from the installer.
    timeoutMs: restartTimeoutMs + 10_000,
    async run({ unit }) {
      await units.restart(unit);
      return { unit, restarted: true };
    },
  };
}
