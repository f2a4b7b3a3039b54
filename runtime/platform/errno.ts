/**
 * errno numbers from the native addon, turned into the names Node itself uses (`ECONNREFUSED`),
 * so callers and logs see the same codes as for any other Node system error.
 */
import { constants } from 'node:os';

// First name wins for aliases (EAGAIN/EWOULDBLOCK), matching the order Node lists them.
const names = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) if (!names.has(value)) names.set(value, name);

/** The symbolic name of an errno given as either sign (-111 or 111 → 'ECONNREFUSED'). */
export function errnoName(errno: number): string {
  return names.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/** A Node-style system error for a negative errno, to keep as an OutpostError's `cause`. */
export function errnoError(errno: number, syscall: string, path?: string): NodeJS.ErrnoException {
  const code = errnoName(errno);
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}${path === undefined ? '' : ` '${path}'`}`);
  err.errno = -Math.abs(errno);
  err.code = code;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  return err;
}
