/**
 * Structured logging: one JSON object per line on stdout, which journald captures under the
 * unit. Sinks are pluggable so the log ring buffer (logs issue) receives the same records.
 * When stdout is journald's stream, each line starts with its syslog priority (`<4>` for a
 * warning), which journald strips and records as PRIORITY=: `journalctl -p warning` works.
 */
import { fstatSync } from 'node:fs';

/** Severity, lowest first. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const rank: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** One log record as written. `msg` is for people, the other fields for machines. */
export interface LogRecord {
  time: string;
  level: Level;
  component: string;
  msg: string;
  [field: string]: unknown;
}

/** Receives every record at or above the logger's level. */
export type LogSink = (record: LogRecord) => void;

/** A component's logger. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger for a sub-component sharing level and sinks. */
  child(component: string): Logger;
}

/** syslog(3) priorities, as journald reads them from a `<N>` line prefix (sd-daemon(3)). */
export const syslogPriority: Record<Level, number> = { debug: 7, info: 6, warn: 4, error: 3 };

/**
 * Whether file descriptor `fd` is the stream journald connected the unit to: systemd sets
 * JOURNAL_STREAM to its `device:inode` (systemd.exec(5)); a redirected stdout no longer matches.
 */
export function isJournalStream(fd: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const expected = env.JOURNAL_STREAM;
  if (!expected) return false;
  try {
    const stat = fstatSync(fd, { bigint: true });
    return expected === `${stat.dev}:${stat.ino}`;
  } catch {
    return false;
  }
}

/** Writes JSON lines to a stream (stdout by default), priority-prefixed for journald when `journal`. */
export function streamSink(stream: NodeJS.WritableStream = process.stdout, journal = stream === process.stdout && isJournalStream(1)): LogSink {
  return (record) => {
    stream.write(`${journal ? `<${syslogPriority[record.level]}>` : ''}${JSON.stringify(record, errorReplacer)}\n`);
  };
}

/** JSON.stringify replacer: an Error becomes its name, message and code. */
export function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { name: value.name, message: value.message, ...(code === undefined ? {} : { code }) };
  }
  return value;
}

/** Creates the root logger; `now` is injectable so tests get stable times. */
export function createLogger(options: { level?: Level; sinks?: LogSink[]; component?: string; now?: () => Date } = {}): Logger {
  const threshold = rank[options.level ?? 'info'];
  const sinks = options.sinks ?? [streamSink()];
  const now = options.now ?? (() => new Date());
  const make = (component: string): Logger => {
    const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
      if (rank[level] < threshold) return;
      const record: LogRecord = { ...fields, time: now().toISOString(), level, component, msg };
      for (const sink of sinks) sink(record);
    };
    return {
      debug: (msg, fields) => emit('debug', msg, fields),
      info: (msg, fields) => emit('info', msg, fields),
      warn: (msg, fields) => emit('warn', msg, fields),
      error: (msg, fields) => emit('error', msg, fields),
      child: (sub) => make(`${component}.${sub}`),
    };
  };
  return make(options.component ?? 'outpost');
}

/** A logger that discards everything, for tests that do not look at logs. */
export const silentLogger: Logger = createLogger({ sinks: [] });
