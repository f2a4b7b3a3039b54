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
 * Built on node:child_process, not execa: the update service runs a tool at every start, and
 * execa's module graph would hold ~2 MiB of heap for the rest of the daemon's life (issue 19's
 * memory budget; bench/README.md).
 */
import { spawn } from 'node:child_process';
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

/** Time a child gets between SIGTERM (its timeout) and SIGKILL. */
const forceKillAfterMs = 5_000;

/** Why a run failed, as {@link execError} words it. */
type Failure = { spawnError: NodeJS.ErrnoException } | { timedOut: true } | { maxBuffer: true } | { signal: NodeJS.Signals } | { exitCode: number };

/** Hands each line (its `\n` or `\r\n` removed) to `sink` as the chunks arrive; `end` flushes the last, unterminated one. */
function lineSplitter(sink: (line: string) => void): { write(chunk: Buffer): void; end(): void } {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  const emit = (text: string) => {
    const lines = (pending + text).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) sink(line.endsWith('\r') ? line.slice(0, -1) : line);
  };
  return {
    write: (chunk) => emit(decoder.write(chunk)),
    end() {
      emit(decoder.end());
      if (pending !== '') sink(pending.endsWith('\r') ? pending.slice(0, -1) : pending);
      pending = '';
    },
  };
}

function stripFinalNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/** The process-runner on node:child_process; `log` receives one debug line per call with its duration. */
export function createExec(log: Logger, options: CreateExecOptions = {}): Exec {
  // Bounded output: ostree status and friends print kilobytes, never megabytes.
  const maxBuffer = options.maxBufferBytes ?? 16 * 1024 * 1024;
  return {
    async run(cmd, args, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? defaultExecTimeoutMs;
      const started = performance.now();
      const outcome = await runChild(cmd, args, opts, timeoutMs, maxBuffer);
      if ('failure' in outcome) throw execError(cmd, args, timeoutMs, maxBuffer, outcome.failure, outcome.stderr);
      log.debug('exec', { cmd, args, ms: Math.round(performance.now() - started) });
      return { stdout: stripFinalNewline(outcome.stdout), stderr: stripFinalNewline(outcome.stderr) };
    },
  };
}

function runChild(cmd: string, args: string[], opts: ExecOptions, timeoutMs: number, maxBuffer: number): Promise<{ stdout: string; stderr: string } | { failure: Failure; stderr: string }> {
  return new Promise((resolve) => {
    const capture = opts.stdout === undefined || opts.stdout === 'capture';
    const child = spawn(cmd, args, {
      shell: false,
      env: { ...childEnvironment(), ...opts.env },
      // Tools that wait on stdin (none should) must not hang the daemon: give them EOF.
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', opts.stdout === 'discard' ? 'ignore' : 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const held = { stdout: 0, stderr: 0 };
    let failure: Failure | undefined;
    let forceKill: NodeJS.Timeout | undefined;
    const stop = (why: Failure) => {
      failure ??= why;
      child.kill('SIGTERM');
      forceKill ??= setTimeout(() => child.kill('SIGKILL'), forceKillAfterMs);
    };
    const timer = setTimeout(() => stop({ timedOut: true }), timeoutMs);
    // As execa did: a child does not outlive the daemon's exit.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    const keep = (which: 'stdout' | 'stderr', chunks: Buffer[]) => (chunk: Buffer) => {
      held[which] += chunk.length;
      if (held[which] > maxBuffer) stop({ maxBuffer: true });
      else chunks.push(chunk);
    };
    const lines = typeof opts.stdout === 'function' ? lineSplitter(opts.stdout) : undefined;
    if (lines) child.stdout?.on('data', (chunk: Buffer) => lines.write(chunk));
    else if (capture) child.stdout?.on('data', keep('stdout', stdout));
    child.stderr?.on('data', keep('stderr', stderr));
    if (opts.input !== undefined && child.stdin) {
      // A tool that exits without reading its input is judged by its exit status, not by EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      clearTimeout(forceKill);
      process.removeListener('exit', killOnExit);
      lines?.end();
      const errText = Buffer.concat(stderr).toString('utf8');
      if (failure === undefined && signal !== null) failure = { signal };
      if (failure === undefined && exitCode !== 0) failure = { exitCode: exitCode ?? -1 };
      resolve(failure === undefined ? { stdout: Buffer.concat(stdout).toString('utf8'), stderr: errText } : { failure, stderr: errText });
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      // Only a failed spawn ends the run here; a failed kill of an exiting child still closes.
      if (child.pid !== undefined) return;
      failure ??= { spawnError: err };
      finish(null, null);
    });
    child.on('close', finish);
  });
}

function execError(cmd: string, args: string[], timeoutMs: number, maxBuffer: number, failure: Failure, stderr: string): OutpostError {
  const command = [cmd, ...args].join(' ');
  const tail = stderrTail(stderr);
  let how: string;
  let transient = false;
  if ('spawnError' in failure) how = failure.spawnError.code === 'ENOENT' ? `${cmd} is not installed or not on PATH` : failure.spawnError.message;
  else if ('timedOut' in failure) {
    how = `timed out after ${timeoutMs} ms and was killed`;
    // A slow disk or a busy device can finish next time; a wrong argument cannot.
    transient = true;
  } else if ('maxBuffer' in failure) how = `printed more than the ${maxBuffer} bytes of output outpost keeps and was stopped`;
  else if ('signal' in failure) how = `killed by ${failure.signal}`;
  else how = `exit code ${failure.exitCode}`;
  return new OutpostError('EXEC_FAILED', `${command}: ${how}${tail === '' ? '' : `\n${tail}`}`, { cause: 'spawnError' in failure ? failure.spawnError : undefined, transient });
}
