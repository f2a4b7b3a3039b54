/**
 * Restarting a systemd unit needs root: the installer's when there is one (it checks its own
 * allow-list too), else systemctl run by this process (root then). The installer's client is
 * loaded by the first restart: without updates through the installer nothing else needs it.
 */
import { localUnits, type UnitControl } from '../commands/units.js';
import type { Exec } from '../platform/index.js';

export function unitControl(installerSocket: string | undefined, exec: Exec): UnitControl {
  if (installerSocket === undefined) return localUnits(exec);
  return { restart: async (unit) => void (await (await import('../installer/client.js')).installerCall(installerSocket, { op: 'unit.restart', unit })) };
}
