/**
 * The process-runner port. Every tool outpost drives (ostree, fsfreeze, sync, tpm2-tools,
 * systemctl) runs through `Exec`, so logic can be tested against the real binaries in temp dirs
 * or against a stand-in, and so one place enforces the rules:
 *
 * - no shell: arguments are passed as an array, never interpolated into a command line;
 * - every call has a timeout (default 10 min), after which the child gets SIGTERM, then SIGKILL;
 * - a failure is an `EXEC_FAILED` OutpostError naming the command, its exit code (or signal or
 *   timeout) and the last lines of its stderr, which is what a person needs to act on it;
 * - children do not inherit `NOTIFY_SOCKET` or `WATCHDOG_*`: only the daemon speaks for its unit
 *   (a health check that runs a tool using sd_notify must not ping the watchdog or end startup).
 *
 * execa is imported on the first call, not with this module: its module graph costs ~2 MiB of
 * heap for the rest of the process's life, and a daemon without updates configured never runs a tool.
 */
import type { ExecaError } from 'execa';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';

/** Per-call options. `env` is added to the inherited environment, not a replacement for it. */
export interface ExecOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  input?: string;
  /**
   * `discard`: only the exit status matters (`ostree ls -R` of a whole OS prints tens of MiB). A
   * function gets each line as it comes, and nothing is kept: output of any length in bounded memory.
   */
  stdout?: 'capture' | 'discard' | ((line: string) => void);
  /** Aborting kills the child as a timeout does (SIGTERM, then SIGKILL); the call rejects once it is gone. */
  signal?: AbortSignal;
  /**
   * Runs the command in a process group of its own, and kills whatever is left of that group when
   * the call ends: at the timeout or the abort at once (SIGKILL), otherwise once the command
   * exited. For scripts outpost does not know (health checks, greenboot's, remediation commands):
   * a check's background child or a hung grandchild must not outlive it.
   */
  ownGroup?: boolean;
  /** Cap on this call's captured stdout and stderr, below the runner's (a script outpost does not know may print without end). */
  maxBufferBytes?: number;
}

/** Options of {@link createExec}. */
export interface CreateExecOptions {
  /** Cap on a captured stdout or stderr; a tool printing more fails. */
  maxBufferBytes?: number;
}

/** What a successful call printed, final newline stripped. */
export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Runs a program without a shell; rejects with `EXEC_FAILED` on a non-zero exit, signal or timeout. */
export interface Exec {
  run(cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
}

/** Default time limit for one call: long enough for a deploy on a slow gateway, short enough to notice a hang. */
export const defaultExecTimeoutMs = 10 * 60_000;

/** How many trailing stderr lines an error message keeps. */
const stderrTailLines = 8;

/** The last few non-empty lines of a tool's stderr, for error messages. */
export function stderrTail(stderr: string, lines = stderrTailLines): string {
  return stderr
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line !== '')
    .slice(-lines)
    .join('\n');
}

/** The daemon's environment without what belongs to its systemd unit alone (sd_notify(3), sd_watchdog_enabled(3)). */
function childEnvironment(): NodeJS.ProcessEnv {
  const { NOTIFY_SOCKET: _socket, WATCHDOG_USEC: _usec, WATCHDOG_PID: _pid, ...rest } = process.env;
  return rest;
}

/** An execa transform that hands each stdout line to `sink` and yields nothing, so nothing is buffered. */
function lineSink(sink: (line: string) => void) {
  return function* (line: unknown): Generator<never, void, unknown> {
    sink(String(line));
  };
}

function isExecaError(err: unknown): err is ExecaError {
  return err instanceof Error && 'isTerminated' in err && 'timedOut' in err;
}

/** The process-runner backed by execa; `log` receives one debug line per call with its duration. */
export function createExec(log: Logger, options: CreateExecOptions = {}): Exec {
  // Bounded output: ostree status and friends print kilobytes, never megabytes.
  const maxBuffer = options.maxBufferBytes ?? 16 * 1024 * 1024;
  return {
    async run(cmd, args, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? defaultExecTimeoutMs;
      const cap = Math.min(maxBuffer, opts.maxBufferBytes ?? maxBuffer);
      const started = performance.now();
      try {
        const { execa } = await import('execa');
        const child = execa(cmd, args, {
          shell: false,
          timeout: timeoutMs,
          ...(opts.signal === undefined ? {} : { cancelSignal: opts.signal }),
          forceKillAfterDelay: 5_000,
          // Tools that wait on stdin (none should) must not hang the daemon: give them EOF.
          ...(opts.input === undefined ? { stdin: 'ignore' as const } : { input: opts.input }),
          env: { ...childEnvironment(), ...opts.env },
          extendEnv: false,
          ...(opts.stdout === 'discard' ? { stdout: 'ignore' as const } : typeof opts.stdout === 'function' ? { stdout: lineSink(opts.stdout) } : {}),
          stripFinalNewline: true,
          maxBuffer: cap,
          encoding: 'utf8',
          ...(opts.ownGroup ? { detached: true } : {}),
        });
        const result = opts.ownGroup ? await killingGroup(child, timeoutMs, opts.signal) : await child;
        log.debug('exec', { cmd, args, ms: Math.round(performance.now() - started) });
        return { stdout: typeof result.stdout === 'string' ? result.stdout : '', stderr: result.stderr };
      } catch (err) {
        throw execError(cmd, args, timeoutMs, cap, err);
      }
    },
  };
}

/** Awaits `child` (a group leader), killing its whole group at the timeout or abort, and what is left of it at the end. */
async function killingGroup<T>(child: Promise<T> & { pid?: number | undefined }, timeoutMs: number, signal: AbortSignal | undefined): Promise<T> {
  const killGroup = (): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // ESRCH: nothing of the group is left.
    }
  };
  // Just after execa's own timeout, so the error still says it timed out.
  const timer = setTimeout(killGroup, timeoutMs + 100);
  signal?.addEventListener('abort', killGroup, { once: true });
  try {
    return await child;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', killGroup);
    killGroup();
  }
}

function execError(cmd: string, args: string[], timeoutMs: number, maxBuffer: number, err: unknown): OutpostError {
  const command = [cmd, ...args].join(' ');
  if (!isExecaError(err)) return new OutpostError('EXEC_FAILED', `${command}: ${String(err)}`, { cause: err });
  const stderr = typeof err.stderr === 'string' ? stderrTail(err.stderr) : '';
  let how: string;
  let transient = false;
  if (err.code === 'ENOENT') how = `${cmd} is not installed or not on PATH`;
  else if (err.timedOut) {
    how = `timed out after ${timeoutMs} ms and was killed`;
    // A slow disk or a busy device can finish next time; a wrong argument cannot.
    transient = true;
  } else if (err.isCanceled) {
    how = 'cancelled and killed';
    transient = true;
  } else if (err.isMaxBuffer) how = `printed more than the ${maxBuffer} bytes of output outpost keeps and was stopped`;
  else if (err.signal !== undefined) how = `killed by ${err.signal}`;
  else if (err.exitCode !== undefined) how = `exit code ${err.exitCode}`;
  else how = err.originalMessage ?? err.shortMessage;
  return new OutpostError('EXEC_FAILED', `${command}: ${how}${stderr === '' ? '' : `\n${stderr}`}`, { cause: err, transient });
}
