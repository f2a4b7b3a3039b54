/**
 * `outpost installer`: the privileged helper. systemd starts it on the first connection to its
 * socket (outpost-installer.socket) and hands that socket over (LISTEN_FDS); without systemd it
 * listens on `installer.socket` itself. It exits when idle.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Config } from '../config/index.js';
import { OutpostError } from '../errors.js';
import { gatedAccessHost, requireSignedCommit, serveInstaller } from '../installer/index.js';
import { localAccessHost } from '../access/host.js';
import { localUnits } from '../commands/units.js';
import { createLogger } from '../logs/index.js';
import { createExec } from '../platform/index.js';
import { localHost, runningArch, trustedExportDir } from '../update/index.js';

/** sd_listen_fds(3): the first descriptor systemd passes. */
const firstListenFd = 3;

function systemdSocket(env: NodeJS.ProcessEnv): { fd: number } | undefined {
  if (env.LISTEN_FDS === undefined) return undefined;
  // Passed but unusable: listening on the path instead would unlink systemd's socket.
  if (env.LISTEN_PID !== String(process.pid) || env.LISTEN_FDS !== '1') throw new OutpostError('CONFIG_INVALID', `systemd passed LISTEN_FDS=${env.LISTEN_FDS} for pid ${env.LISTEN_PID ?? '?'}; the installer takes exactly one socket (Accept=no)`);
  return { fd: firstListenFd };
}

/** Serves until idle or SIGTERM; resolves to the exit code. */
export async function runInstaller(config: Config, env: NodeJS.ProcessEnv): Promise<number> {
  const update = config.update;
  if (!update) throw new OutpostError('CONFIG_INVALID', 'the installer needs the "update" section of the config');
  const log = createLogger({ level: config.log.level, component: 'installer' });
  let listen: string | { fd: number } | undefined = systemdSocket(env);
  if (!listen) {
    if (!config.installer.socket) throw new OutpostError('CONFIG_INVALID', 'installer.socket: not set, and systemd passed no socket (LISTEN_FDS)');
    await mkdir(dirname(config.installer.socket), { recursive: true });
    // Only one installer runs per socket path; a file left there is a dead one's.
    await rm(config.installer.socket, { force: true });
    listen = config.installer.socket;
  }
  const exec = createExec(log.child('exec'));
  const host = localHost({ config: update, stateDir: config.paths.stateDir, exec, log, onSimulatedReboot: () => undefined });
  const arch = update.arch ?? runningArch();
  const walk = { exportDir: trustedExportDir(config.paths.stateDir), agentStateDir: config.paths.stateDir, rootFile: update.rootFile, storeDir: join(config.installer.stateDir, 'tuf'), now: () => new Date(), log: log.child('gate') };
  const accessSection = config.commands?.access;
  const done = new Promise<number>((resolve) => {
    const stop = (why: string) => {
      log.info('stopping', { why });
      server.then((s) => s.close(() => resolve(0)), () => resolve(1));
    };
    const server = serveInstaller(
      {
        host,
        requireSigned: (commit) => requireSignedCommit({ ...walk, hardware: update.hardware, arch, bootedCommit: () => host.ostree.bootedCommit() }, commit),
        agentStateDir: config.paths.stateDir,
        // From the installer's own config: principals, key directory, longest grant, device id and groups are the image's.
        ...(config.commands && accessSection
          ? {
              access: gatedAccessHost({
                host: localAccessHost({ keysDir: accessSection.keysDir, principals: accessSection.principals, maxDurationSec: accessSection.maxDurationSec, log: log.child('access') }),
                walk,
                recordFile: join(config.installer.stateDir, 'access-grants.json'),
                keysDir: accessSection.keysDir,
                deviceId: config.deviceId,
                groups: config.commands.groups,
                settings: accessSection,
                skewMs: config.commands.skewSec * 1000,
                now: () => new Date(),
                log: log.child('access'),
              }),
            }
          : {}),
        // This config is the image's alone (cli/outpost.ts): the agent cannot widen the list.
        units: { allowed: restartableUnits(config), control: localUnits(exec) },
        log,
        // Only systemd starts it again after an idle exit.
        idleExitMs: typeof listen === 'string' ? 0 : config.installer.idleExitSec * 1000,
        onIdle: () => resolve(0),
        // Fault injection for the crash tests: die like `kill -9` once one of these ops is done,
        // before the agent hears of it; once per op (noted in the installer's state dir), so
        // one update can be cut after each of several steps.
        afterPerform: (op) => {
          if (!(env.OUTPOST_FAULT_KILL_AFTER_OP ?? '').split(',').includes(op)) return;
          const fired = join(config.installer.stateDir, 'fault-fired');
          mkdirSync(fired, { recursive: true });
          if (existsSync(join(fired, op))) return;
          writeFileSync(join(fired, op), '');
          process.kill(process.pid, 'SIGKILL');
        },
      },
      listen,
    );
    server.then(() => log.info('installer ready', { listen: typeof listen === 'string' ? listen : 'systemd socket' }), (err: unknown) => {
      log.error('cannot listen', { err });
      resolve(1);
    });
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return done;
}

/** The units the agent may have restarted: `restart-service`'s list and the health checks' restart-unit remediations. */
export function restartableUnits(config: Config): string[] {
  const remediated = config.health.checks.flatMap((check) => (check.remediation?.action === 'restart-unit' ? [check.remediation.unit] : []));
  return [...new Set([...(config.commands?.restartUnits ?? []), ...remediated])];
}
