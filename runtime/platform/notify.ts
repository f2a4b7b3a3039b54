/**
 * Tells the service manager about readiness, status and liveness (sd_notify(3) protocol).
 *
 * Three mechanisms, picked once per notifier:
 * - `none`: NOTIFY_SOCKET unset, so nobody listens (not under systemd, or Type=simple); send is a no-op.
 * - `native`: the addon writes the datagram itself from this process.
 * - `systemd-notify`: the addon is absent, so a `systemd-notify` child sends it. The datagram then
 *   comes from another process, which systemd only accepts with `NotifyAccess=all` in the unit
 *   (as root, `--pid` lets it claim our PID, but do not rely on that). It also waits for systemd
 *   to process the message (BARRIER=1), so each send costs a process spawn and a round trip.
 *
 * execa is imported on first use of the fallback only: it costs ~2 MiB of heap for the daemon's
 * whole life, and the fallback runs only on hosts where the addon failed to build.
 */
import type { ExecaError } from 'execa';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import { errnoError } from './errno.js';
import { loadNative, type NativeLoad } from './native.js';

/** How notifications reach the service manager. */
export type NotifyMechanism = 'native' | 'systemd-notify' | 'none';

/** Sends sd_notify fields (READY, STATUS, WATCHDOG, STOPPING, ...) to the service manager. */
export interface Notifier {
  readonly mechanism: NotifyMechanism;
  /** Sends the fields as one message; rejects with OutpostError('NOTIFY_FAILED'). */
  send(fields: Record<string, string>): Promise<void>;
}

/** What a notifier needs; `native` defaults to loading the addon, `pid` to this process. */
export interface NotifierOptions {
  env: NodeJS.ProcessEnv;
  log: Logger;
  native?: NativeLoad;
  pid?: number;
  /** Bound on one systemd-notify run, which waits up to 5 s for systemd's barrier reply. */
  timeoutMs?: number;
}

const keyPattern = /^[A-Z][A-Z0-9_]*$/;
const badAddress = new Set(['EAFNOSUPPORT', 'E2BIG', 'EINVAL']);

/** Formats fields as sd_notify's newline-separated `KEY=VALUE` assignments. */
export function formatNotifyFields(fields: Record<string, string>): string[] {
  return Object.entries(fields).map(([key, value]) => {
    if (!keyPattern.test(key)) {
      throw new OutpostError('NOTIFY_FAILED', `sd_notify field name '${key}' is not an upper-case identifier`, { transient: false });
    }
    // A newline inside a value would start a new assignment (a STATUS text could inject READY=1).
    return `${key}=${value.replace(/[\r\n]+/g, ' ')}`;
  });
}

/** Creates the notifier for this process's environment, logging once if it had to fall back. */
export function createNotifier(options: NotifierOptions): Notifier {
  const socket = options.env.NOTIFY_SOCKET;
  // Fields are still checked so a bad call fails in development too, not first under systemd.
  if (socket === undefined || socket === '') return { mechanism: 'none', send: async (fields) => void formatNotifyFields(fields) };

  const native = options.native ?? loadNative({ env: options.env });
  if (native.addon !== undefined) {
    const addon = native.addon;
    return {
      mechanism: 'native',
      send: async (fields) => {
        const lines = formatNotifyFields(fields);
        if (lines.length === 0) return;
        const r = addon.notify(lines.map((l) => `${l}\n`).join(''), socket);
        if (r < 0) {
          const cause = errnoError(r, 'sd_notify', socket);
          // A malformed NOTIFY_SOCKET stays malformed; a missing or busy listener may come back.
          const transient = !badAddress.has(cause.code ?? '');
          throw new OutpostError('NOTIFY_FAILED', `could not notify systemd at NOTIFY_SOCKET=${socket}: ${cause.code}`, { cause, transient });
        }
      },
    };
  }

  options.log.warn('native addon unavailable, notifying systemd through systemd-notify (the unit needs a drop-in with NotifyAccess=all)', {
    reason: native.reason,
  });
  const pid = options.pid ?? process.pid;
  const timeout = options.timeoutMs ?? 10_000;
  return {
    mechanism: 'systemd-notify',
    send: async (fields) => {
      const lines = formatNotifyFields(fields);
      if (lines.length === 0) return;
      let execaError: typeof ExecaError | undefined;
      try {
        const { execa, ExecaError: loaded } = await import('execa');
        execaError = loaded;
        await execa('systemd-notify', [`--pid=${pid}`, ...lines], { env: { NOTIFY_SOCKET: socket }, timeout, stdin: 'ignore' });
      } catch (err) {
        throw new OutpostError('NOTIFY_FAILED', `systemd-notify to NOTIFY_SOCKET=${socket} failed: ${execFailure(err, timeout, execaError)}`, { cause: err });
      }
    },
  };
}

function execFailure(err: unknown, timeoutMs: number, execaError: typeof ExecaError | undefined): string {
  if (execaError === undefined || !(err instanceof execaError)) return err instanceof Error ? err.message : String(err);
  if (err.timedOut) return `no answer within ${timeoutMs} ms`;
  if (err.code === 'ENOENT') return 'systemd-notify is not installed (or not on PATH)';
  const raw: unknown = err.stderr; // typed by execa's options generic; checked, not trusted
  const stderr = typeof raw === 'string' ? raw.trim() : '';
  return stderr !== '' ? stderr : err.shortMessage;
}

/**
 * How often to send WATCHDOG=1, in ms: half of WATCHDOG_USEC as sd_watchdog_enabled(3) advises,
 * or undefined when the watchdog is not enabled for `pid` (unset, invalid, or meant for another
 * process via WATCHDOG_PID).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
  const usec = Number(usecText);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && (!/^\d+$/.test(pidText) || Number(pidText) !== pid)) return undefined;
  // Never 0: a zero interval would spin; systemd's own minimum WatchdogSec is far above 2 ms anyway.
  return Math.max(1, Math.floor(usec / 2000));
}
