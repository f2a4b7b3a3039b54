/**
 * `reboot`: through the update path's reboot (the installer's, or the bootloader backend's), after
 * a short delay so the result is on its way first. The result says the reboot was requested; the
 * command is never run again after the reboot (the ledger holds its id), though the broker may
 * deliver it again.
 */
import { z } from 'zod';
import type { CommandHandler } from '../service.js';

const rebootArgs = z.strictObject({
  delaySec: z.number().int().min(0).max(3600).default(5),
  reason: z.string().min(1).max(200).default('remote command'),
});

export function rebootHandler(reboot: (reason: string) => Promise<void>, onError: (err: unknown) => void): CommandHandler<z.output<typeof rebootArgs>> {
  return {
    args: rebootArgs,
    async run(args, { command, whenAnswered }) {
      const reason = `command ${command.id}: ${args.reason}`;
      // Only once the result is recorded and queued: a reboot before that (delaySec 0) would
      // leave the command `started`, to be reported `interrupted` though it did what it was asked.
      whenAnswered(() => void setTimeout(() => reboot(reason).catch(onError), args.delaySec * 1000), { essential: true });
      return { rebootInSec: args.delaySec };
    },
  };
}
