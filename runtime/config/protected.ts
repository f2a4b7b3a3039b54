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

// By keys, never dotted strings: a key with a dot in its name is not a path.
const protectedKeys = protectedConfigPaths.map((p) => p.split('.'));
const startsWith = (path: readonly string[], start: readonly string[]): boolean => start.length <= path.length && start.every((key, i) => path[i] === key);

/** Whether the setting at `keys` is a protected one or lies below one. */
export function isProtectedSetting(keys: readonly string[]): boolean {
  return protectedKeys.some((p) => startsWith(keys, p));
}

/** The protected settings below the setting at `keys` (every one for `[]`): what replacing or leaving it out would take with it. */
export function protectedBelow(keys: readonly string[]): readonly (readonly string[])[] {
  return protectedKeys.filter((p) => p.length > keys.length && startsWith(p, keys));
}
