/**
 * What just-in-time access needs root for, as a port: writing the authorized-keys files sshd reads
 * and ending the sessions of a principal. Local (this process is root: tests, the demo, a
 * single-process install) or the installer's socket (installer/client.ts `remoteAccessHost`), which
 * runs this same local adapter as root on the agent's behalf, as update/host.ts does for OSTree.
 *
 * Invariants:
 * - `set` is the whole truth: every allowed principal's file is rewritten (atomically, 0644, in a
 *   0755 directory, as sshd's StrictModes wants) or removed, so a lost or repeated call converges.
 *   Each entry is checked again here (principal allowed, key and `from=` well formed, expiry within
 *   `maxDurationSec` of now): the installer trusts the agent no more than the agent trusts a command.
 *   An entry failing them is left out and answered as refused; it never holds up the others.
 * - Only files named like a principal are touched in `keysDir`, which is outpost's own directory.
 * - Ending sessions stops (SIGSTOP) every process of the principal's uid until a scan finds no new
 *   one, then kills them (SIGKILL): a process forking while it is ended cannot outrun it. Root and
 *   accounts not on the allow-list are refused. No shell, no external tool: /proc and kill(2).
 */
import { chmod, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import { writeFileAtomic } from '../platform/index.js';
import { authorizedKeyLine, PRINCIPAL_PATTERN, renderAuthorizedKeys, type AuthorizedKeyEntry } from './keys.js';

/** A live SSH session, as the process table shows it (sshd's per-session process of the user). */
export interface AccessSession {
  readonly principal: string;
  /** `<pid>-<start time in clock ticks>`: unique within a boot even when pids are reused. */
  readonly id: string;
  readonly pid: number;
  /** `pts/N`, or null for a session without a terminal (`ssh host cmd`, a tunnel). */
  readonly tty: string | null;
}

/** A key to be in place, with the proof the installer needs to add it (installer/access-gate.ts). */
export interface AccessEntry extends AuthorizedKeyEntry {
  /** The signed `grant-access` envelope (`outpost.command/1`) that granted it. */
  readonly proof?: unknown;
}

/** An entry `set` left out, and why. */
export interface AccessRefusal {
  readonly id: string;
  readonly reason: string;
}

/** The access port. */
export interface AccessHost {
  /**
   * Makes the authorized-keys files hold exactly the entries it accepts; resolves with the ones it
   * refused. One bad entry never holds up the others, nor a removal.
   */
  set(entries: readonly AccessEntry[]): Promise<{ refused: AccessRefusal[] }>;
  /** Ends every process of `principal`; resolves with how many were killed. */
  endSessions(principal: string): Promise<number>;
  /** The SSH sessions of the allowed principals open now. */
  sessions(): Promise<AccessSession[]>;
}

/** What the local adapter needs. */
export interface LocalAccessHostOptions {
  /** One file per principal, `<keysDir>/<principal>` (sshd: `AuthorizedKeysFile … <keysDir>/%u`). */
  readonly keysDir: string;
  readonly principals: readonly string[];
  readonly maxDurationSec: number;
  readonly log: Logger;
  readonly now?: () => Date;
  /** For tests: where the process table is. */
  readonly procDir?: string;
  readonly passwdFile?: string;
}

/** Slack for the expiry check: the agent computed it a moment ago, with the same clock. */
const expirySlackMs = 60_000;
/** Bound on the stop-and-rescan rounds of ending a principal's processes. */
const maxStopRounds = 50;

function malformed(entry: AuthorizedKeyEntry): string | undefined {
  try {
    authorizedKeyLine(entry);
    return undefined;
  } catch (err) {
    return `it is malformed: ${(err as Error).message}`;
  }
}

interface ProcessInfo {
  readonly pid: number;
  readonly uids: number[];
  readonly state: string;
  readonly startTicks: string;
  readonly cmdline: string;
}

async function readProcess(procDir: string, pid: number): Promise<ProcessInfo | undefined> {
  try {
    const [status, stat, cmdline] = await Promise.all([
      readFile(join(procDir, String(pid), 'status'), 'utf8'),
      readFile(join(procDir, String(pid), 'stat'), 'utf8'),
      readFile(join(procDir, String(pid), 'cmdline'), 'utf8').catch(() => ''),
    ]);
    const uids = (/^Uid:\s+(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).map(Number).filter(Number.isInteger);
    // Fields after the command name in parentheses (which may itself hold spaces and parentheses).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, uids, state: fields[0] ?? '?', startTicks: fields[19] ?? '0', cmdline: cmdline.replace(/\0+$/, '').replace(/\0/g, ' ') };
  } catch {
    return undefined; // gone, or hidden from this process
  }
}

async function processes(procDir: string): Promise<ProcessInfo[]> {
  const pids = (await readdir(procDir)).filter((name) => /^\d+$/.test(name)).map(Number);
  const all = await Promise.all(pids.filter((pid) => pid !== process.pid).map((pid) => readProcess(procDir, pid)));
  return all.filter((p): p is ProcessInfo => p !== undefined);
}

/** The uid of a local account, from the passwd file (principals are local accounts). */
export async function localUid(name: string, passwdFile = '/etc/passwd'): Promise<number | undefined> {
  const text = await readFile(passwdFile, 'utf8');
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields[0] === name && fields.length >= 7) return Number(fields[2]);
  }
  return undefined;
}

/** sshd's process for one session runs as the user and names itself `sshd: user@pts/N` (`sshd-session:` from OpenSSH 9.8). */
const sessionTitle = /^sshd(?:-session)?: ([a-z_][a-z0-9_-]{0,31})@(\S+)/;

/** The adapter run by root: the installer, or the single-process daemon. */
export function localAccessHost(options: LocalAccessHostOptions): AccessHost {
  const { keysDir, log } = options;
  const now = options.now ?? (() => new Date());
  const procDir = options.procDir ?? '/proc';
  const allowed = new Set(options.principals);

  const notAllowed = (principal: string): string | undefined =>
    PRINCIPAL_PATTERN.test(principal) && allowed.has(principal) ? undefined : `principal ${JSON.stringify(principal.slice(0, 64))} is not in commands.access.principals`;
  const requireAllowed = (principal: string): void => {
    const problem = notAllowed(principal);
    if (problem !== undefined) throw new OutpostError('INSTALLER_REFUSED', problem);
  };

  return {
    async set(entries) {
      const byPrincipal = new Map<string, AuthorizedKeyEntry[]>();
      const latest = now().getTime() + options.maxDurationSec * 1000 + expirySlackMs;
      const refused: AccessRefusal[] = [];
      for (const entry of entries) {
        const problem =
          notAllowed(entry.principal) ??
          (Date.parse(entry.expiresAt) > latest ? `it expires at ${entry.expiresAt}, more than commands.access.maxDurationSec (${options.maxDurationSec} s) from now` : malformed(entry));
        if (problem === undefined) byPrincipal.set(entry.principal, [...(byPrincipal.get(entry.principal) ?? []), entry]);
        else refused.push({ id: entry.id, reason: problem });
      }
      const files = new Map<string, string>();
      for (const [principal, list] of byPrincipal) files.set(principal, renderAuthorizedKeys(list));
      await mkdir(keysDir, { recursive: true });
      // sshd opens <keysDir>/%u as the principal, and the installer's UMask=0077 would make a new
      // directory 0700: every login refused.
      await chmod(keysDir, 0o755);
      for (const [principal, text] of files) await writeFileAtomic(join(keysDir, principal), text, { mode: 0o644 });
      // Files of principals without a grant (or no longer allowed) go: the directory is outpost's.
      for (const name of await readdir(keysDir)) {
        if (PRINCIPAL_PATTERN.test(name) && !files.has(name)) await rm(join(keysDir, name), { force: true });
      }
      if (refused.length > 0) log.warn('access grants refused', { refused });
      log.info('authorized keys written', { keysDir, grants: entries.length - refused.length, principals: [...files.keys()] });
      return { refused };
    },

    async endSessions(principal) {
      requireAllowed(principal);
      const uid = await localUid(principal, options.passwdFile);
      if (uid === undefined) return 0; // no such account: nothing of it runs
      if (uid === 0) throw new OutpostError('INSTALLER_REFUSED', `principal ${principal} is uid 0; outpost never ends root's processes`);
      const stopped = new Set<number>();
      for (let round = 0; round < maxStopRounds; round++) {
        const fresh = (await processes(procDir)).filter((p) => p.uids.includes(uid) && p.state !== 'Z' && !stopped.has(p.pid));
        if (fresh.length === 0) break;
        for (const p of fresh) {
          try {
            process.kill(p.pid, 'SIGSTOP');
          } catch {
            // exited meanwhile
          }
          stopped.add(p.pid);
        }
      }
      for (const pid of stopped) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
      log.info('sessions ended', { principal, uid, processes: stopped.size });
      return stopped.size;
    },

    async sessions() {
      const found: AccessSession[] = [];
      const uids = new Map<string, number | undefined>();
      for (const principal of allowed) uids.set(principal, await localUid(principal, options.passwdFile));
      for (const p of await processes(procDir)) {
        const match = sessionTitle.exec(p.cmdline);
        // Anyone may title a process so; only sshd's, running as the named user, counts.
        if (!match || !allowed.has(match[1]!) || p.state === 'Z' || p.uids[0] !== uids.get(match[1]!)) continue;
        found.push({ principal: match[1]!, id: `${p.pid}-${p.startTicks}`, pid: p.pid, tty: match[2] === 'notty' ? null : match[2]! });
      }
      return found;
    },
  };
}
