/**
 * Loads the optional N-API addon (native/outpost_native.c) built by `npm ci`.
 *
 * The addon is optional by design: callers get either the typed addon or a reason it is absent,
 * and choose their fallback. Loading never throws. The package root is found by walking up to
 * outpost's package.json, so the same code works from runtime/ (tsx) and dist/runtime/ (tsc).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { packageRoot } from '../version.js';
import { join } from 'node:path';

/** The addon's functions. Every number result below zero is a negative errno; none throw for errno. */
export interface OutpostNative {
  /** Sends one sd_notify datagram: 1 sent, 0 when socketPath is undefined (no-op), -errno on failure. */
  notify(state: string, socketPath?: string): number;
  /** Opens a watchdog device (which arms it on most drivers): an fd or -errno. */
  wdOpen(path: string): number;
  /** WDIOC_KEEPALIVE: 0 or -errno. */
  wdKeepalive(fd: number): number;
  /** WDIOC_SETTIMEOUT: the timeout in seconds the driver actually set, or -errno. */
  wdSetTimeout(fd: number, seconds: number): number;
  /** WDIOC_GETTIMEOUT: the current timeout in seconds, or -errno. */
  wdGetTimeout(fd: number): number;
  /** Closes the fd, writing the magic 'V' first when `magic` (disarms unless the driver is nowayout): 0 or -errno. */
  wdClose(fd: number, magic: boolean): number;
  /** The peer of a connected unix socket: `[pid, uid, gid, ...supplementary gids]`, or -errno. */
  peerCredentials(fd: number): number[] | number;
}

/** The addon, or why it is not available. */
export type NativeLoad =
  | { readonly addon: OutpostNative; readonly reason?: undefined }
  | { readonly addon: undefined; readonly reason: string };

const functions = ['notify', 'wdOpen', 'wdKeepalive', 'wdSetTimeout', 'wdGetTimeout', 'wdClose', 'peerCredentials'] as const;

function isOutpostNative(value: unknown): value is OutpostNative {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return functions.every((name) => typeof record[name] === 'function');
}

/** Loads the addon; `OUTPOST_NATIVE=0` in `env` disables it (to exercise the fallbacks). */
export function loadNative(options: { env?: NodeJS.ProcessEnv; root?: string } = {}): NativeLoad {
  const env = options.env ?? process.env;
  if (env.OUTPOST_NATIVE === '0') return { addon: undefined, reason: 'disabled by OUTPOST_NATIVE=0' };
  if (process.platform !== 'linux') return { addon: undefined, reason: `not supported on ${process.platform}` };
  const root = options.root ?? packageRoot();
  if (root === undefined) return { addon: undefined, reason: 'outpost package.json not found above this module' };
  const file = join(root, 'native', 'build', 'Release', 'outpost_native.node');
  if (!existsSync(file)) return { addon: undefined, reason: `${file} not built (see native/build.log; rerun node native/build.mjs)` };
  try {
    const loaded: unknown = createRequire(import.meta.url)(file);
    if (!isOutpostNative(loaded)) return { addon: undefined, reason: `${file} does not export the expected functions` };
    return { addon: loaded };
  } catch (err) {
    return { addon: undefined, reason: `${file} failed to load: ${err instanceof Error ? err.message : String(err)}` };
  }
}
