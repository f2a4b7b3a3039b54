/**
 * `revoke-access {grantId?, fingerprint?, principal?}`: ends every active grant matching all the
 * fields given (at least one): its key removed, its tunnel closed, the principal's sessions ended.
 * The result lists the grants it ended; none matching is not a failure (it may have expired).
 */
import { z } from 'zod';
import { fingerprintSchema, type AccessService } from '../../access/index.js';
import { COMMAND_ID_PATTERN } from '../../protocol/index.js';
import type { CommandHandler } from '../service.js';

const revokeArgs = z
  .strictObject({
    grantId: z.string().regex(COMMAND_ID_PATTERN, 'must be the id of the grant-access command').optional(),
    fingerprint: fingerprintSchema.optional(),
    principal: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a local user name').optional(),
  })
  .refine((a) => a.grantId !== undefined || a.fingerprint !== undefined || a.principal !== undefined, 'name the grant: grantId, fingerprint or principal');

export function revokeAccessHandler(access: () => AccessService): CommandHandler<z.output<typeof revokeArgs>> {
  return {
    args: revokeArgs,
    timeoutMs: 60_000,
    run: async (args) => ({ revoked: await access().revoke(args) }),
  };
}
