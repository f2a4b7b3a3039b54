/**
 * The process-runner port. Every tool outpost drives (ostree, fsfreeze, sync, tpm2-tools,
 * systemctl, health scripts) runs through `Exec`, so logic can be tested against the real binaries
 * in temp dirs or against a stand-in, and so one place enforces the rules:
 *
 * - no shell: arguments are passed as an array, never interpolated into a command line;
 * - every call has a timeout (default 10 min), after which the child gets SIGTERM, then SIGKILL
 *   5 s later (its whole process group at once with `ownGroup`);
 * - output is bounded: captured stdout and stderr stop the child past the cap;
 * - a failure is an `EXEC_FAILED` OutpostError naming the command, its exit code (or signal or
 *   timeout) and the last lines of its stderr, which is what a person needs to act on it;
 * - children do not inherit `NOTIFY_SOCKET` or `WATCHDOG_*`: only the daemon speaks for its unit
 *   (a health check that runs a tool using sd_notify must not ping the watchdog or end startup).
 *
 * Built on node:child_process, not execa: under the daemon's `--jitless` execa's module graph and
 * its per-call machinery held ~9 MiB more RssAnon after 200 runs than plain spawn (~1 MiB), and
 * health checks run commands every few seconds (bench/README.md "Health checks overhead").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
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

/** After SIGTERM at the timeout or abort, how long a child gets before SIGKILL. */
const killGraceMs = 5_000;

/** How a call ended, as the error message tells it. */
interface Ending {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError: NodeJS.ErrnoException | undefined;
  timedOut: boolean;
  cancelled: boolean;
  overflowed: boolean;
  stderr: string;
}

/** The facts of a failed call, as the error's `cause` (health reads the exit code from it). */
export class ProcessFailure extends Error {
  override readonly name = 'ProcessFailure';
  readonly exitCode: number | undefined;
  readonly signal: NodeJS.Signals | undefined;
  constructor(ending: Ending) {
    super(ending.spawnError?.message ?? (ending.code !== null ? `exit code ${ending.code}` : `signal ${ending.signal ?? '?'}`));
    this.exitCode = ending.code ?? undefined;
    this.signal = ending.signal ?? undefined;
  }
}

/** Collects a stream's text up to `cap` bytes; `onOverflow` once past it. */
function collector(cap: number, onOverflow: () => void): { push(chunk: Buffer): void; text(): string } {
  const chunks: Buffer[] = [];
  let bytes = 0;
  let over = false;
  return {
    push(chunk) {
      if (over) return;
      if (bytes + chunk.byteLength > cap) {
        over = true;
        onOverflow();
        return;
      }
      chunks.push(chunk);
      bytes += chunk.byteLength;
    },
    text: () => Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, ''),
  };
}

/** Hands each complete line to `sink`, keeping only the unfinished one: any length in bounded memory. */
function lineSplitter(sink: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  return {
    push(chunk) {
      const lines = (partial + decoder.write(chunk)).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) sink(line.replace(/\r$/, ''));
    },
    end() {
      const rest = partial + decoder.end();
      partial = '';
      if (rest !== '') sink(rest.replace(/\r$/, ''));
    },
  };
}

/** The process-runner on node:child_process; `log` receives one debug line per call with its duration. */
export function createExec(log: Logger, options: CreateExecOptions = {}): Exec {
  // Bounded output: ostree status and friends print kilobytes, never megabytes.
  const maxBuffer = options.maxBufferBytes ?? 16 * 1024 * 1024;
  return {
    run(cmd, args, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? defaultExecTimeoutMs;
      const cap = Math.min(maxBuffer, opts.maxBufferBytes ?? maxBuffer);
      const started = performance.now();
      return new Promise<ExecResult>((resolve, reject) => {
        const ending: Ending = { code: null, signal: null, spawnError: undefined, timedOut: false, cancelled: false, overflowed: false, stderr: '' };
        if (opts.signal?.aborted) {
          ending.cancelled = true;
          reject(execError(cmd, args, timeoutMs, cap, ending));
          return;
        }
        const child: ChildProcess = spawn(cmd, args, {
          shell: false,
          // Tools that wait on stdin (none should) must not hang the daemon: give them EOF.
          stdio: [opts.input === undefined ? 'ignore' : 'pipe', opts.stdout === 'discard' ? 'ignore' : 'pipe', 'pipe'],
          env: { ...childEnvironment(), ...opts.env },
          detached: opts.ownGroup === true,
        });
        const kill = (signal: NodeJS.Signals): void => {
          try {
            if (opts.ownGroup && child.pid !== undefined) process.kill(-child.pid, signal);
            else child.kill(signal);
          } catch {
            // ESRCH: gone already.
          }
        };
        let forceTimer: NodeJS.Timeout | undefined;
        const stop = (): void => {
          // A group of scripts outpost does not know gets no grace: nothing of it may outlive the call.
          if (opts.ownGroup) {
            kill('SIGKILL');
            return;
          }
          kill('SIGTERM');
          forceTimer ??= setTimeout(() => kill('SIGKILL'), killGraceMs);
        };
        const overflow = (): void => {
          ending.overflowed = true;
          stop();
        };
        const stdout = typeof opts.stdout === 'function' ? lineSplitter(opts.stdout) : collector(cap, overflow);
        const stderr = collector(cap, overflow);
        child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
        child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
        if (opts.input !== undefined) {
          child.stdin?.on('error', () => undefined);
          child.stdin?.end(opts.input);
        }
        const timer = setTimeout(() => {
          ending.timedOut = true;
          stop();
        }, timeoutMs);
        const onAbort = (): void => {
          ending.cancelled = true;
          stop();
        };
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        child.on('error', (err: NodeJS.ErrnoException) => {
          ending.spawnError = err;
        });
        // A group's leader exiting ends the call: what it left running (holding the pipes) goes.
        if (opts.ownGroup) child.on('exit', () => kill('SIGKILL'));
        child.on('close', (code, signal) => {
          clearTimeout(timer);
          clearTimeout(forceTimer);
          opts.signal?.removeEventListener('abort', onAbort);
          ending.code = code;
          ending.signal = signal;
          ending.stderr = stderr.text();
          if ('end' in stdout) stdout.end();
          const failed = ending.spawnError !== undefined || ending.timedOut || ending.cancelled || ending.overflowed || code !== 0;
          if (failed) {
            reject(execError(cmd, args, timeoutMs, cap, ending));
            return;
          }
          log.debug('exec', { cmd, args, ms: Math.round(performance.now() - started) });
          resolve({ stdout: 'text' in stdout ? stdout.text() : '', stderr: ending.stderr });
        });
      });
    },
  };
}

function execError(cmd: string, args: string[], timeoutMs: number, maxBuffer: number, ending: Ending): OutpostError {
  const command = [cmd, ...args].join(' ');
  const stderr = stderrTail(ending.stderr);
  let how: string;
  let transient = false;
  if (ending.spawnError?.code === 'ENOENT') how = `${cmd} is not installed or not on PATH`;
  else if (ending.spawnError !== undefined) how = ending.spawnError.message;
  else if (ending.timedOut) {
    how = `timed out after ${timeoutMs} ms and was killed`;
    // A slow disk or a busy device can finish next time; a wrong argument cannot.
    transient = true;
  } else if (ending.cancelled) {
    how = 'cancelled and killed';
    transient = true;
  } else if (ending.overflowed) how = `printed more than the ${maxBuffer} bytes of output outpost keeps and was stopped`;
  else if (ending.signal !== null) how = `killed by ${ending.signal}`;
  else how = `exit code ${ending.code ?? '?'}`;
  return new OutpostError('EXEC_FAILED', `${command}: ${how}${stderr === '' ? '' : `\n${stderr}`}`, { cause: new ProcessFailure(ending), transient });
}
