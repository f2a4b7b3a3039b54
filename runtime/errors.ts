/**
 * The one error type outpost throws across module boundaries.
 *
 * Callers branch on `code` (stable, documented in docs/architecture.md), never on message text.
 * `transient` says whether retrying the same operation later can succeed (network down, broker
 * restarting) or whether it cannot (bad signature, invalid config).
 */

/** Every stable error code outpost emits. Adding one is an API change: document it. */
export const errorCodes = {
  CONFIG_INVALID: { exit: 78, transient: false },
  CONFIG_UNREADABLE: { exit: 78, transient: false },
  USAGE: { exit: 64, transient: false },
  STORE_LOCKED: { exit: 75, transient: true },
  STORE_CORRUPT: { exit: 65, transient: false },
  STORE_TOO_NEW: { exit: 65, transient: false },
  STORE_IO: { exit: 74, transient: true },
  NOTIFY_FAILED: { exit: 69, transient: true },
  WATCHDOG_UNAVAILABLE: { exit: 69, transient: false },
  API_UNAVAILABLE: { exit: 69, transient: true },
  API_BAD_RESPONSE: { exit: 65, transient: false },
  API_BAD_REQUEST: { exit: 64, transient: false },
  API_FORBIDDEN: { exit: 77, transient: false },
  LINK_TLS_FILES: { exit: 78, transient: false },
  LINK_UNAVAILABLE: { exit: 69, transient: true },
  PROTOCOL_INVALID: { exit: 65, transient: false },
  UPDATE_SIGNATURE: { exit: 65, transient: false },
  UPDATE_THRESHOLD: { exit: 65, transient: false },
  UPDATE_EXPIRED: { exit: 65, transient: false },
  UPDATE_ROLLBACK: { exit: 65, transient: false },
  UPDATE_METADATA_INVALID: { exit: 65, transient: false },
  UPDATE_UNAVAILABLE: { exit: 69, transient: true },
  KEY_FILE: { exit: 65, transient: false },
  EXEC_FAILED: { exit: 69, transient: false },
  OSTREE_FAILED: { exit: 69, transient: false },
  DOWNLOAD_FAILED: { exit: 69, transient: true },
  DOWNLOAD_VERIFY: { exit: 65, transient: false },
  DISK_SPACE: { exit: 73, transient: false },
  STOP_TIMEOUT: { exit: 70, transient: false },
  UPDATE_NO_SOURCE: { exit: 69, transient: false },
  UPDATE_ROLLBACK_IMPOSSIBLE: { exit: 70, transient: false },
  UPDATE_BUSY: { exit: 75, transient: true },
  UPDATE_BOOTED_UNKNOWN: { exit: 75, transient: true },
  UPDATE_STOPPING: { exit: 75, transient: true },
  UPDATE_REFUSED: { exit: 65, transient: false },
  UPDATE_TOO_LATE: { exit: 69, transient: false },
  UPDATE_CANCELLED: { exit: 75, transient: true },
  INSTALLER_UNAVAILABLE: { exit: 69, transient: true },
  INSTALLER_REFUSED: { exit: 65, transient: false },
  ACCESS_REFUSED: { exit: 65, transient: false },
  ACCESS_UNPROVEN: { exit: 65, transient: false },
  INTERNAL: { exit: 70, transient: false },
} as const satisfies Record<string, { exit: number; transient: boolean }>;

/** A stable, machine-readable error code. */
export type ErrorCode = keyof typeof errorCodes;

/** An error a person can act on: what failed, where, and what to do about it. */
export class OutpostError extends Error {
  override readonly name = 'OutpostError';
  readonly code: ErrorCode;
  readonly transient: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; transient?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.transient = options.transient ?? errorCodes[code].transient;
  }

  /** The sysexits(3) status a CLI should exit with for this error. */
  get exitCode(): number {
    return errorCodes[this.code].exit;
  }
}

/** Narrows an unknown thrown value to an OutpostError with one of the given codes. */
export function isOutpostError(err: unknown, ...codes: ErrorCode[]): err is OutpostError {
  return err instanceof OutpostError && (codes.length === 0 || codes.includes(err.code));
}

/** Wraps anything thrown into an OutpostError, keeping the original as `cause`. */
export function toOutpostError(err: unknown, code: ErrorCode, context: string): OutpostError {
  if (err instanceof OutpostError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new OutpostError(code, `${context}: ${detail}`, { cause: err });
}
