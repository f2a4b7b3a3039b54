/**
 * The settings that are not the fleet's to change, and why: the identity and places the device
 * runs with (`deviceId`, `paths`), the privileged side and its trust (`installer`,
 * `update.rootFile`, `update.sysroot`, `update.osname`, `update.boot`), what commands may do
 * (`commands`), the link the command came through (`broker`: a wrong value cuts the device off with
 * no remote way back), local access (`api`), and `update.probation.checks`, argv the daemon runs (a
 * remote way to run any program). These are changed in the image or on the device.
 *
 * `set-config` refuses a patch touching one (commands/handlers/
 * set-config.ts), and the loader never leaves one out of the overlay to get a config it can run
 * (load.ts): only a hand on the device puts one there, and it stays as strict as the image's file.
 */
export const protectedConfigPaths: readonly string[] = ['deviceId', 'paths', 'installer', 'commands', 'broker', 'api', 'update.rootFile', 'update.sysroot', 'update.osname', 'update.boot', 'update.probation.checks'];

const protectedKeys = protectedConfigPaths.map((p) => p.split('.'));

/** Whether the dotted `field` is a protected setting or lies below one. */
export function isProtectedConfigPath(field: string): boolean {
  return protectedConfigPaths.some((p) => field === p || field.startsWith(`${p}.`));
}

/**
 * The protected settings that leaving out the setting at `keys` would take with it: `keys` itself
 * when it is one or lies below one, else those below it that `isSet` says are there. By keys, so a
 * key with a dot in its name is never taken for a path.
 */
export function protectedWithin(keys: readonly string[], isSet: (keys: readonly string[]) => boolean): string[][] {
  const startsWith = (path: readonly string[], start: readonly string[]) => start.every((key, i) => path[i] === key);
  return protectedKeys.filter((p) => (p.length <= keys.length ? startsWith(keys, p) : startsWith(p, keys) && isSet(p)));
}
