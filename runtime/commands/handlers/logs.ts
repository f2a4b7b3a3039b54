/**
 * `logs {lines?, since?}`: the newest entries of the daemon's journal (`journalctl -u <unit> -o
 * json`), gzip-compressed and base64-encoded into the result, until the log store takes this over.
 *
 * Invariants:
 * - Bounded everywhere: journalctl runs through Exec with a timeout; its output is read line by
 *   line and only the newest {@link maxRawBytes} are kept; the compressed data is at most
 *   {@link maxCompressedBytes}, so the result (base64 adds a third) stays under the 64 KiB result
 *   limit and the outbox never meets a result it cannot send. What does not fit is the oldest
 *   lines, dropped first, and the output says `truncated`.
 * - Read-only. The agent reads the journal as a member of `systemd-journal` (the unit's
 *   SupplementaryGroups=); nothing here needs root.
 */
import { strToU8, gzipSync } from 'fflate';
import type { Exec } from '../../platform/index.js';
import type { CommandHandler } from '../service.js';
import { journalctlTimeoutMs, logsSpec, seconds, type LogsArgs } from './logs-spec.js';

/** Newest journal output kept before compressing. */
export const maxRawBytes = 2 * 1024 * 1024;
/** Largest compressed data: 44 KiB is 60 KiB in base64, leaving room for the result's other fields. */
export const maxCompressedBytes = 44 * 1024;

/** Where the journal is read. */
export interface LogsOptions {
  readonly exec: Exec;
  /** `commands.logs.unit`. */
  readonly unit: string;
  /** `commands.logs.journalDir`: journal files to read instead of the system journal. */
  readonly journalDir?: string;
}

/** What the result's `output` holds. */
export interface LogsOutput {
  encoding: 'gzip+base64';
  unit: string;
  /** Journal entries in `data`, one JSON object per line as `journalctl -o json` prints them, oldest first. */
  lines: number;
  /** Uncompressed size of `data`. */
  bytes: number;
  compressedBytes: number;
  /** Older entries were dropped to stay within the limits. */
  truncated: boolean;
  data: string;
}

/**
 * Compresses the newest lines that fit in {@link maxCompressedBytes}. Starts from all of them and,
 * while too large, keeps the share the last try suggests (10 % less), so a few rounds suffice.
 */
export function packLines(lines: readonly string[], limit = maxCompressedBytes): { kept: number; bytes: number; compressed: Uint8Array } {
  let kept = lines.length;
  for (;;) {
    const text = lines.slice(lines.length - kept).join('\n');
    const raw = strToU8(text);
    const compressed = gzipSync(raw, { level: 9, mtime: 0 });
    if (compressed.length <= limit || kept === 0) return { kept, bytes: raw.length, compressed };
    kept = Math.min(kept - 1, Math.floor(kept * (limit / compressed.length) * 0.9));
    kept = Math.max(kept, 0);
  }
}

export function logsHandler(options: LogsOptions): CommandHandler<LogsArgs> {
  return {
    ...logsSpec,
    async run(args, context): Promise<LogsOutput> {
      const lines: string[] = [];
      let held = 0;
      let dropped = false;
      await options.exec.run(
        'journalctl',
        [
          ...(options.journalDir === undefined ? [] : [`--directory=${options.journalDir}`]),
          `--unit=${options.unit}`,
          '--output=json',
          '--no-pager',
          '--quiet',
          `--lines=${args.lines}`,
          ...(args.since === undefined ? [] : [`--since=-${seconds(args.since)}s`]),
        ],
        {
          timeoutMs: journalctlTimeoutMs,
          // Oldest first: once over the cap, the oldest lines go.
          stdout: (line) => {
            if (line === '') return;
            lines.push(line);
            held += Buffer.byteLength(line) + 1;
            while (held > maxRawBytes && lines.length > 0) {
              held -= Buffer.byteLength(lines.shift()!) + 1;
              dropped = true;
            }
          },
        },
      );
      // Compressing 2 MiB under --jitless takes seconds on a gateway: say where the command is.
      context.progress(undefined, `read ${lines.length} journal lines${dropped ? ' (the oldest dropped)' : ''}; compressing`);
      const packed = packLines(lines);
      return {
        encoding: 'gzip+base64',
        unit: options.unit,
        lines: packed.kept,
        bytes: packed.bytes,
        compressedBytes: packed.compressed.length,
        truncated: dropped || packed.kept < lines.length,
        data: Buffer.from(packed.compressed).toString('base64'),
      };
    },
  };
}
