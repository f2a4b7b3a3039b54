/** `outpost update check|apply|status|install|cancel|rollback`: thin clients of the daemon's update API. */
import { resolve } from 'node:path';
import { apiRequest, apiUpload } from '../api/index.js';
import type { UpdateStatus } from '../update/index.js';
import { runsReleaseBefore } from '../update/status-text.js';
import type { Command, CommandContext, OptionSpec } from './command.js';

/** Resolves the API socket path from the command's options (config or --socket). */
export type SocketOf = (ctx: CommandContext) => string;

function formatBytes(n: number): string {
  return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/** Renders the update status for people. */
export function formatUpdateStatus(s: UpdateStatus): string {
  const installed = s.installedVersion === 0 ? 'none recorded (factory image)' : `${s.installedVersion}${runsReleaseBefore(s) ? ' (rolled back from: the release before it runs; only newer ones are offered)' : ''}`;
  const lines = [`state:             ${s.state}`, `installed release: ${installed}`, `booted commit:     ${s.bootedCommit ?? 'unknown'}`];
  if (s.release) lines.push(`installing:        release ${s.release.version} (${s.release.delta ? 'static delta' : 'full pull'}) ${s.release.commit.slice(0, 12)}`);
  if (s.progress) {
    const pct = s.progress.total > 0 ? ` ${((100 * s.progress.bytes) / s.progress.total).toFixed(1)}%` : '';
    lines.push(`progress:          ${s.progress.phase} ${formatBytes(s.progress.bytes)} of ${formatBytes(s.progress.total)}${pct} at ${formatBytes(s.progress.rateBps)}/s`);
  }
  if (s.reason) lines.push(`reason:            ${s.reason}`);
  if (s.last) lines.push(`last update:       release ${s.last.version} ${s.last.result} at ${s.last.at}${s.last.reason ? ` (${s.last.code ? `${s.last.code}: ` : ''}${s.last.reason})` : ''}`);
  if (s.lastCheck) lines.push(`last check:        ${s.lastCheck.at}: ${s.lastCheck.result}`);
  return lines.join('\n');
}

function describeSelection(result: unknown): string {
  const r = result as { release: { version: number; delta: unknown } | null; reason?: string };
  return r.release ? `release ${r.release.version} (${r.release.delta ? 'static delta' : 'full pull'})` : `nothing to install: ${r.reason ?? ''}`;
}

const waitOption: OptionSpec = { type: 'boolean', description: 'follow the update through its reboots to its verdict (exit 0: committed; 1: failed, or its trial failed)' };

const getStatus = (socket: string) => async (): Promise<UpdateStatus> => (await apiRequest(socket, 'GET', '/v1/update')) as UpdateStatus;

/**
 * Starts an update with `begin` and, with --wait, follows it to its outcome: progress on stderr,
 * the outcome on stdout (JSON: the final status), the exit code from the outcome.
 */
async function startAndFollow(ctx: CommandContext, socket: string, begin: () => Promise<unknown>, started: (result: unknown) => string): Promise<number> {
  const since = ctx.values.wait === true ? (await getStatus(socket)()).last : null;
  const result = await begin();
  const json = ctx.values.json === true;
  const release = (result as { release: unknown }).release;
  if (ctx.values.wait !== true || !release) {
    ctx.out(json ? JSON.stringify(result, null, 2) : started(result));
    return 0;
  }
  if (!json) ctx.out(started(result));
  const { followUpdate } = await import('./follow-update.js');
  const outcome = await followUpdate({ poll: getStatus(socket), since, ...(ctx.progress ? { progress: ctx.progress } : {}), note: ctx.err });
  ctx.progress?.('');
  ctx.out(json ? JSON.stringify({ outcome: outcome.summary, exitCode: outcome.exitCode, status: outcome.status }, null, 2) : outcome.summary);
  return outcome.exitCode;
}

/** Builds the update commands; `options` are shared with `outpost status` (config, socket). */
export function updateCommands(options: Record<string, OptionSpec>, socketOf: SocketOf): Command[] {
  const json: OptionSpec = { type: 'boolean', description: 'print JSON' };
  const print = (ctx: CommandContext, value: unknown, human: string) => ctx.out(ctx.values.json === true ? JSON.stringify(value, null, 2) : human);
  return [
    {
      name: 'update status',
      summary: 'show the update state, progress and the last outcome',
      options: { ...options, json },
      run: async (ctx) => {
        const status = (await apiRequest(socketOf(ctx), 'GET', '/v1/update')) as UpdateStatus;
        print(ctx, status, formatUpdateStatus(status));
        return 0;
      },
    },
    {
      name: 'update check',
      summary: 'verify the signed metadata now and say what would be installed',
      options: { ...options, json },
      run: async (ctx) => {
        const result = await apiRequest(socketOf(ctx), 'POST', '/v1/update/check', undefined, 120_000);
        print(ctx, result, describeSelection(result));
        return 0;
      },
    },
    {
      name: 'update apply',
      summary: 'check and start installing the newest release (progress: --wait, or outpost update status)',
      options: { ...options, json, wait: waitOption },
      run: async (ctx) => {
        const socket = socketOf(ctx);
        return startAndFollow(ctx, socket, () => apiRequest(socket, 'POST', '/v1/update/apply', undefined, 120_000), (result) => {
          const { release, inProgress } = result as { release: unknown; inProgress?: string };
          return release ? `${inProgress ? `an update is already under way (${inProgress}):` : 'installing'} ${describeSelection(result)}` : describeSelection(result);
        });
      },
    },
    {
      name: 'update cancel',
      summary: 'cancel the update under way, before its deploy (the download stops; automatic checks pass the release over until an explicit apply)',
      options: { ...options, json },
      run: async (ctx) => {
        const result = (await apiRequest(socketOf(ctx), 'POST', '/v1/update/cancel', undefined, 600_000)) as { cancelled: { version: number } | null; reason?: string };
        print(ctx, result, result.cancelled ? `cancelled the update to release ${result.cancelled.version}` : `nothing to cancel: ${result.reason ?? ''}`);
        return 0;
      },
    },
    {
      name: 'update rollback',
      summary: 'go back to the previous deployment (the release before) and reboot into it; the running release is not offered again',
      options: { ...options, json },
      run: async (ctx) => {
        const result = (await apiRequest(socketOf(ctx), 'POST', '/v1/update/rollback', undefined, 120_000)) as { from: { version: number; commit: string }; to: { commit: string } };
        print(ctx, result, `rolling back from release ${result.from.version} to ${result.to.commit.slice(0, 12)}: the gateway reboots into it (outpost update status follows it)`);
        return 0;
      },
    },
    {
      name: 'update install',
      summary: 'install an offline bundle file (from outpostctl release bundle), no network needed',
      args: 'FILE',
      positionals: { min: 1, max: 1 },
      options: { ...options, json, wait: waitOption },
      run: async (ctx) => {
        const file = resolve(ctx.positionals[0] ?? '');
        const socket = socketOf(ctx);
        // Sent, not named: the daemon may not see this path (PrivateTmp, ProtectHome, another user's files).
        return startAndFollow(ctx, socket, () => apiUpload(socket, '/v1/update/install', file, 600_000), (result) => `installing ${describeSelection(result)} from ${file}`);
      },
    },
  ];
}
