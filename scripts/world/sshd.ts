/**
 * The SSH side of just-in-time access, for the access tests and the demo: sshd processes of their
 * own (never the host's: own config, host key and port on 127.0.0.1, `AuthorizedKeysFile
 * <keysDir>/%u`, where outpost writes the grants), a local account made for the purpose as the
 * principal, and an operator's key for real `ssh` logins.
 */
import { accessSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { freePort } from './mosquitto.js';
import { until } from './until.js';

const sshdPath = '/usr/sbin/sshd';

/** An sshd of the world's own. */
export interface Sshd {
  readonly port: number;
  /** Its public host key, `ssh-ed25519 AAAA…` (what a tunnel's `hostKey` names). */
  readonly hostKey: string;
  /** The directory sshd reads `<keysDir>/<user>` from. */
  readonly keysDir: string;
}

export interface SshWorld {
  /** The local account logins go to; made by the world unless it already existed. */
  readonly principal: string;
  /** The operator's private key file (`<key>.pub` next to it) and public key line. */
  readonly operatorKey: string;
  readonly operatorPub: string;
  /** Starts the sshd `name` with its own keys directory; `extra` lines go to its config. */
  startSshd(name: string, extra?: readonly string[]): Promise<Sshd>;
  /** A login running `command`; 255 is ssh's own failure (here: refused). */
  login(port: number, command?: string): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }>;
  /** A session left open (`sleep 120`) and whether it has ended. */
  session(port: number): { process: ResultPromise; ended: () => boolean };
  /** Stops the sshds and sessions, removes the account if the world made it, and the directory. */
  close(): Promise<void>;
}

const onPath = (name: string): boolean =>
  (process.env['PATH'] ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

/** Why an SSH world cannot run on this machine, or undefined when it can. */
export function sshWorldUnavailable(): string | undefined {
  // sshd switches to the logged-in user, and ending a principal's sessions signals its processes.
  if (process.getuid?.() !== 0) return 'needs root (sshd changes to the logged-in user; ending sessions signals its processes)';
  if (!existsSync(sshdPath)) return `${sshdPath} is missing (openssh-server: scripts/install-host-deps.sh installs it)`;
  const missing = ['ssh', 'ssh-keygen', 'ssh-keyscan', 'useradd', 'userdel'].filter((tool) => !onPath(tool));
  if (missing.length > 0) return `${missing.join(', ')} not on PATH (openssh-client, passwd: scripts/install-host-deps.sh)`;
  return undefined;
}

export async function createSshWorld(principal: string): Promise<SshWorld> {
  // sshd reads a user's authorized keys as that user: the path must be open to it (mkdtemp's is 0700).
  const dir = mkdtempSync(join(tmpdir(), 'outpost-ssh-'));
  chmodSync(dir, 0o755);
  const sshds: ResultPromise[] = [];
  const sessions: ResultPromise[] = [];
  let createdUser = false;
  const close = async (): Promise<void> => {
    for (const p of [...sessions, ...sshds]) p.kill('SIGTERM');
    await Promise.all([...sessions, ...sshds].map((p) => p.catch(() => undefined)));
    if (createdUser) {
      await execa('pkill', ['-KILL', '-u', principal], { reject: false });
      await execa('userdel', [principal], { reject: false });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // `*`: no password, yet not locked (sshd without PAM refuses a `!` account even with a key).
    if ((await execa('id', ['-u', principal], { reject: false })).exitCode !== 0) {
      await execa('useradd', ['-M', '-d', '/', '-s', '/bin/sh', '-p', '*', principal]);
      createdUser = true;
    }
    mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege separation directory
    const operatorKey = join(dir, 'operator-ssh');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'operator@laptop', '-f', operatorKey]);
    const sshArgs = (port: number): string[] => ['-F', '/dev/null', '-i', operatorKey, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'ConnectTimeout=5', '-p', String(port), `${principal}@127.0.0.1`];
    return {
      principal,
      operatorKey,
      operatorPub: readFileSync(`${operatorKey}.pub`, 'utf8'),
      startSshd: async (name, extra = []) => {
        const home = join(dir, name);
        const keysDir = join(dir, `${name}-keys`);
        mkdirSync(home, { recursive: true });
        mkdirSync(keysDir, { recursive: true });
        await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(home, 'host-key')]);
        const port = await freePort();
        const config = join(home, 'sshd_config');
        writeFileSync(
          config,
          [
            'ListenAddress 127.0.0.1',
            `HostKey ${join(home, 'host-key')}`,
            `AuthorizedKeysFile ${keysDir}/%u`,
            'StrictModes no',
            'UsePAM no',
            `PidFile ${join(home, 'sshd.pid')}`,
            'PasswordAuthentication no',
            'KbdInteractiveAuthentication no',
            'LogLevel VERBOSE',
            ...extra,
            '',
          ].join('\n'),
        );
        const sshd = execa(sshdPath, ['-D', '-e', '-f', config, '-p', String(port)], { reject: false, all: true });
        sshds.push(sshd);
        await until(`${name} sshd listening`, async () => {
          if (sshd.exitCode !== null) throw new Error(`sshd exited: ${String(sshd.all ?? '')}`);
          return (await execa('ssh-keyscan', ['-p', String(port), '-t', 'ed25519', '127.0.0.1'], { reject: false })).stdout.includes('ssh-ed25519') ? true : undefined;
        }, 20_000);
        const hostKey = readFileSync(join(home, 'host-key.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
        return { port, hostKey, keysDir };
      },
      login: async (port, command = 'true') => {
        const r = await execa('ssh', [...sshArgs(port), command], { reject: false, timeout: 15_000 });
        return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
      },
      session: (port) => {
        const process = execa('ssh', [...sshArgs(port), 'sleep 120'], { reject: false });
        sessions.push(process);
        return { process, ended: () => process.exitCode !== null || process.signalCode !== null };
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
