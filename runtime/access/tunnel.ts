/**
 * The reverse SSH tunnel of a grant, for a gateway behind NAT: the system's OpenSSH client
 * (`ssh -N -R <remotePort>:127.0.0.1:<sshdPort>`) to the bastion the signed command names, run by
 * the agent (no root), for the grant's lifetime only.
 *
 * Invariants:
 * - No shell and no user or system ssh config (`-F /dev/null`): every option is on the argv. The
 *   bastion's host key is pinned (a known-hosts file holding only the key the command carried,
 *   `StrictHostKeyChecking=yes`, under a fixed alias), `BatchMode`: it never prompts.
 * - The device's own tunnel key is generated once (ed25519, 0600) and reused; only its public half
 *   leaves the device (in the grant's result), for the bastion's operator to authorize.
 * - While the grant lives, an exited ssh is started again after a backoff (1 s doubling to 60 s,
 *   back to 1 s after a run of a minute); each run's time limit is what is left of the grant, and
 *   `stop` kills it (SIGTERM, then SIGKILL), so no tunnel outlives its grant, even a hung one.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../logs/index.js';
import { writeFileAtomic, stderrTail, type Exec } from '../platform/index.js';

/** Where a tunnel goes. */
export interface TunnelTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** `<type> <base64>` of the bastion's host key. */
  readonly hostKey: string;
  /** The port the bastion listens on (its loopback) for this device's sshd. */
  readonly remotePort: number;
}

/** What a tunnel needs. */
export interface TunnelOptions {
  readonly id: string;
  readonly target: TunnelTarget;
  /** The device's private tunnel key (its `.pub` beside it). */
  readonly keyFile: string;
  /** Where the pinned known-hosts file goes. */
  readonly dir: string;
  readonly sshdPort: number;
  /** Monotonic ms left of the grant; the tunnel is not started again past it. */
  readonly remainingMs: () => number;
  readonly log: Logger;
}

/** A running tunnel. */
export interface Tunnel {
  stop(): Promise<void>;
}

const hostAlias = 'outpost-tunnel';
const backoffMinMs = 1_000;
const backoffMaxMs = 60_000;
const keygenTimeoutMs = 30_000;

/** Why a grant with a tunnel is refused when tunnels are off (the args schema and the service say it alike). */
export const TUNNELS_OFF = 'reverse tunnels are off on this device (on when commands.access.tunnelHosts names a bastion and commands.access.tunnels is not false)';

/**
 * Whether `host` is one of `allowed` (config `commands.access.tunnelHosts`): as spelled, since a
 * resolved address could change under a name; host names are case-insensitive.
 */
export function tunnelHostAllowed(allowed: readonly string[], host: string): boolean {
  const wanted = host.toLowerCase();
  return allowed.some((entry) => entry.toLowerCase() === wanted);
}

/** The device's tunnel key: created on first use; resolves with its public half. */
export async function ensureTunnelKey(keyFile: string, exec: Exec): Promise<string> {
  if (!existsSync(keyFile)) {
    await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 });
    // A half-written pair from a crash is made again (ssh-keygen refuses to overwrite).
    await rm(keyFile, { force: true });
    await rm(`${keyFile}.pub`, { force: true });
    await exec.run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'outpost-tunnel', '-f', keyFile], { timeoutMs: keygenTimeoutMs });
  }
  const pub = (await readFile(`${keyFile}.pub`, 'utf8')).trim().split(' ');
  return `${pub[0]} ${pub[1]}`;
}

/** The ssh argv of a tunnel (exported for the unit tests). */
export function tunnelArgs(options: Pick<TunnelOptions, 'target' | 'keyFile' | 'sshdPort'>, knownHosts: string): string[] {
  const { target } = options;
  const o = (option: string) => ['-o', option];
  return [
    '-N', '-T', '-F', '/dev/null',
    '-i', options.keyFile,
    ...o('IdentitiesOnly=yes'), ...o('IdentityAgent=none'), ...o('BatchMode=yes'),
    ...o('PasswordAuthentication=no'), ...o('KbdInteractiveAuthentication=no'),
    ...o('StrictHostKeyChecking=yes'), ...o(`UserKnownHostsFile=${knownHosts}`), ...o('GlobalKnownHostsFile=/dev/null'),
    ...o(`HostKeyAlias=${hostAlias}`), ...o('CheckHostIP=no'), ...o('UpdateHostKeys=no'),
    ...o('ExitOnForwardFailure=yes'), ...o('ServerAliveInterval=15'), ...o('ServerAliveCountMax=3'), ...o('ConnectTimeout=15'),
    '-R', `${target.remotePort}:127.0.0.1:${options.sshdPort}`,
    '-p', String(target.port), '-l', target.user,
    '--', target.host,
  ];
}

/** The daemon's environment without its unit's own variables (as platform/exec.ts does). */
function childEnvironment(): Record<string, string | undefined> {
  const { NOTIFY_SOCKET: _socket, WATCHDOG_USEC: _usec, WATCHDOG_PID: _pid, ...rest } = process.env;
  return rest;
}

/** Starts the tunnel and keeps it up until `stop` or the grant's end. */
export async function startTunnel(options: TunnelOptions): Promise<Tunnel> {
  const { log, target } = options;
  const { execa } = await import('execa');
  const knownHosts = join(options.dir, `known-hosts-${options.id}`);
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(knownHosts, `${hostAlias} ${target.hostKey}\n`, { mode: 0o600 });
  const args = tunnelArgs(options, knownHosts);
  let stopped = false;
  let child: ReturnType<typeof execa> | undefined;
  let wake: (() => void) | undefined;
  const loop = (async () => {
    let backoff = backoffMinMs;
    while (!stopped) {
      const remaining = options.remainingMs();
      if (remaining <= 0) break;
      const started = performance.now();
      log.info('tunnel starting', { id: options.id, host: target.host, port: target.port, remotePort: target.remotePort });
      child = execa('ssh', args, { env: childEnvironment(), extendEnv: false, reject: false, stdin: 'ignore', stdout: 'ignore', timeout: remaining, forceKillAfterDelay: 2_000 });
      const result = await child;
      child = undefined;
      if (stopped) break;
      const ranMs = performance.now() - started;
      if (ranMs > backoffMaxMs) backoff = backoffMinMs;
      log.warn('tunnel ended; starting it again', { id: options.id, exitCode: result.exitCode, signal: result.signal, stderr: stderrTail(String(result.stderr ?? '')), retryInMs: backoff });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      backoff = Math.min(backoff * 2, backoffMaxMs);
    }
  })().catch((err: unknown) => log.error('the tunnel loop failed', { id: options.id, err }));
  return {
    async stop() {
      stopped = true;
      wake?.();
      child?.kill('SIGTERM');
      await loop;
      await rm(knownHosts, { force: true }).catch(() => undefined);
      log.info('tunnel closed', { id: options.id });
    },
  };
}
