/** The `GET /v1/status` document: what an operator on the device wants to see first. */
import { z } from 'zod';

/** Schema of the status document (also validates what the CLI receives). */
export const statusSchema = z.object({
  deviceId: z.string(),
  version: z.string(),
  pid: z.number().int(),
  startedAt: z.string(),
  uptimeSec: z.number(),
  bootedCommit: z.string().nullable(),
  link: z.object({
    state: z.string(),
    since: z.string(),
    lastError: z.string().optional(),
    connects: z.number().int(),
  }),
  memory: z.object({ rssBytes: z.number(), heapUsedBytes: z.number() }),
  /** The OSTree deployments in boot order, when updates are configured (as `ostree admin status`). */
  deployments: z
    .array(z.object({ osname: z.string(), commit: z.string(), serial: z.number().int(), booted: z.boolean(), pending: z.boolean(), rollback: z.boolean(), pinned: z.boolean(), version: z.string().nullable() }))
    .optional(),
});

/** The status document. */
export type Status = z.infer<typeof statusSchema>;

/** Renders the status for people (`outpost status` without --json). */
export function formatStatus(s: Status): string {
  const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
  const link = s.link.lastError && s.link.state !== 'connected' ? `${s.link.state} since ${s.link.since} (${s.link.lastError})` : `${s.link.state} since ${s.link.since}`;
  return [
    `device:        ${s.deviceId}`,
    `outpost:       ${s.version} (pid ${s.pid}, up ${Math.round(s.uptimeSec)} s)`,
    `booted commit: ${s.bootedCommit ?? 'unknown (not an OSTree boot)'}`,
    `link:          ${link}`,
    `memory:        rss ${mib(s.memory.rssBytes)}, heap ${mib(s.memory.heapUsedBytes)}`,
    ...(s.deployments ? ['deployments:', ...s.deployments.map(formatDeployment)] : []),
  ].join('\n');
}

/** One line per deployment the way `ostree admin status` marks them: `*` booted, then its role. */
function formatDeployment(d: NonNullable<Status['deployments']>[number]): string {
  const roles = [d.pending && 'pending', d.rollback && 'rollback', d.pinned && 'pinned'].filter(Boolean);
  return `${d.booted ? '*' : ' '} ${d.osname} ${d.commit}.${d.serial}${d.version ? ` (version ${d.version})` : ''}${roles.length > 0 ? ` (${roles.join(', ')})` : ''}`;
}
