import { scriptOutputBytes, type CheckProbe } from '../probe.js';
import type { CheckOf, ProbeDeps } from './deps.js';
import { messageOf } from './files.js';

/** How much of a check's output its detail keeps: the end, where the reason usually is. */
export const maxOutputChars = 4096;

/** The last `max` characters of lines as they come, in bounded memory. */
export class OutputTail {
  private lines: string[] = [];
  private chars = 0;

  constructor(private readonly max: number) {}

  push(line: string): void {
    const kept = line.length > this.max ? line.slice(-this.max) : line;
    this.lines.push(kept);
    this.chars += kept.length + 1;
    while (this.chars > this.max && this.lines.length > 1) this.chars -= (this.lines.shift() as string).length + 1;
  }

  text(): string {
    return this.lines.join('\n');
  }
}

/** The exit code Exec's error carries from the runner (execa's `exitCode`), when the program exited. */
function exitCodeOf(err: unknown): number | undefined {
  const cause = err instanceof Error ? err.cause : undefined;
  if (typeof cause !== 'object' || cause === null || !('exitCode' in cause)) return undefined;
  return typeof cause.exitCode === 'number' ? cause.exitCode : undefined;
}

/**
 * Runs `command` (argv, no shell) with OUTPOST_HEALTH_CHECK=<name>; exit status 0 passes. At the
 * abort Exec kills it (SIGTERM, SIGKILL after its grace) and the run ends once it is gone.
 */
export function execProbe(check: CheckOf<'exec'>, deps: ProbeDeps): CheckProbe {
  // The schema's argv has at least one element.
  const [cmd, ...args] = check.command as [string, ...string[]];
  return {
    async run(signal) {
      const stdout = new OutputTail(maxOutputChars);
      try {
        await deps.exec.run(cmd, args, {
          signal,
          // The signal ends the run at the check's timeout; this backstop only stops Exec's 10 min default from cutting a longer one.
          timeoutMs: (check.timeoutSec + 1) * 1000,
          env: { OUTPOST_HEALTH_CHECK: check.name },
          ownGroup: true,
          maxBufferBytes: scriptOutputBytes,
          stdout: (line) => stdout.push(line),
        });
        return { ok: true, measurements: { exitCode: 0 } };
      } catch (err) {
        if (signal.aborted) throw err;
        const exitCode = exitCodeOf(err);
        // Exec's message names the command, how it ended and the end of its stderr.
        const output = stdout.text();
        const detail = `${messageOf(err)}${output === '' ? '' : `\nstdout:\n${output}`}`;
        return { ok: false, detail: detail.length > maxOutputChars ? `…${detail.slice(-maxOutputChars)}` : detail, ...(exitCode === undefined ? {} : { measurements: { exitCode } }) };
      }
    },
  };
}
