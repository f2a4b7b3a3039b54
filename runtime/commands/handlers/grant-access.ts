/**
 * `grant-access {publicKey, principal, durationSec, from?, tunnel?}`: one SSH key may log in as one
 * allow-listed local account for a bounded time (access/service.ts). The arguments are checked
 * here against this device's config, so a grant it would refuse is `rejected` (bad args) before
 * anything is recorded; the key itself is parsed strictly (access/keys.ts). The result names the
 * grant (its id is the command's: what `revoke-access` takes), the key's fingerprint and the
 * wall-clock expiry, and with a tunnel the device's public tunnel key for the bastion's operator.
 */
import { z } from 'zod';
import { checkFromPatterns, parsePublicKey, type AccessService, type AccessSettings } from '../../access/index.js';
import { tunnelHostAllowed, TUNNELS_OFF } from '../../access/tunnel.js';
import { tunnelHostSchema } from '../../config/index.js';
import type { CommandHandler } from '../service.js';
import { acceptedEnvelope } from '../verify.js';

const keyText = (what: string) =>
  z.string().superRefine((text, ctx) => {
    try {
      parsePublicKey(text);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `${what}: ${(err as Error).message}` });
    }
  });

/** The argument schema for this device's settings, as the installer checks it too. */
export function grantAccessArgs(settings: Pick<AccessSettings, 'principals' | 'maxDurationSec'>) {
  return z.strictObject({
    publicKey: keyText('not a single OpenSSH public key'),
    principal: z.enum(settings.principals as [string, ...string[]]),
    durationSec: z.number().int().min(1).max(settings.maxDurationSec),
    from: z
      .string()
      .superRefine((text, ctx) => {
        try {
          checkFromPatterns(text);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message });
        }
      })
      .optional(),
    tunnel: z
      .strictObject({
        host: tunnelHostSchema,
        port: z.number().int().min(1).max(65_535).default(22),
        user: z.string().regex(/^[a-z_][a-z0-9_.-]{0,31}$/, 'must be a user name'),
        hostKey: keyText("not the bastion's public host key"),
        remotePort: z.number().int().min(1).max(65_535),
      })
      .optional(),
  });
}

/**
 * The agent's schema adds the tunnel's bounds, which the installer leaves out: the agent runs the
 * tunnel, as itself, so the bastions it may reach are its config's to say.
 */
function agentArgs(settings: AccessSettings) {
  return grantAccessArgs(settings).superRefine((args, ctx) => {
    if (!args.tunnel) return;
    if (!settings.tunnels) ctx.addIssue({ code: 'custom', path: ['tunnel'], message: TUNNELS_OFF });
    else if (!tunnelHostAllowed(settings.tunnelHosts, args.tunnel.host)) ctx.addIssue({ code: 'custom', path: ['tunnel', 'host'], message: `not in commands.access.tunnelHosts (${args.tunnel.host})` });
  });
}

export function grantAccessHandler(settings: AccessSettings, access: () => AccessService): CommandHandler<z.output<ReturnType<typeof grantAccessArgs>>> {
  return {
    args: agentArgs(settings),
    timeoutMs: 60_000,
    run: (args, { command, signal }) => access().grant(command.id, { ...args, ...(args.tunnel ? { tunnel: { ...args.tunnel, hostKey: parsePublicKey(args.tunnel.hostKey).text } } : {}) }, acceptedEnvelope(command), signal),
  };
}
