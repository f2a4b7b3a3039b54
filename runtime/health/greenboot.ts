/**
 * greenboot's layout, so gateways that carry greenboot scripts keep them: the executables in
 * `<dir>/check/required.d` and `<dir>/check/wanted.d` become required and wanted exec checks, and
 * those in `<dir>/green.d` / `<dir>/red.d` run after a release is committed / rolled back.
 * Unlike greenboot, each script runs with a timeout (a hung script fails its run, it does not
 * hold the boot), and on the checks' schedule, not only once per boot.
 */
import { constants } from 'node:fs';
import { access, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { HealthCheckConfig, HealthConfig } from '../config/index.js';
import type { Exec } from '../platform/index.js';
import { scriptOutputBytes } from './probe.js';

/** A script's file name as a check name: lower case, only the characters check names take. */
function checkName(severity: 'required' | 'wanted', file: string): string {
  const stem = file.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '');
  return `greenboot-${severity}-${stem}`.slice(0, 64);
}

/** The executable regular files of `dir` in name order (greenboot's order); none when it is missing. */
async function scripts(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const names = entries.filter((e) => e.isFile()).map((e) => e.name).sort();
  const executable = await Promise.all(names.map((name) => access(join(dir, name), constants.X_OK).then(() => true, () => false)));
  return names.filter((_, i) => executable[i]);
}

/** Scripts taken per directory: the health report (and the state document) stays bounded. */
export const maxScriptsPerDir = 32;

/**
 * The greenboot check scripts as exec checks (one failing run fails them, as in greenboot).
 * `taken` are the names already in use: a script whose name would clash gets a numbered one.
 */
export async function greenbootChecks(settings: HealthConfig['greenboot'], taken: ReadonlySet<string> = new Set(), log?: (message: string) => void): Promise<HealthCheckConfig[]> {
  const checks: HealthCheckConfig[] = [];
  const names = new Set(taken);
  for (const severity of ['required', 'wanted'] as const) {
    const dir = join(settings.dir, 'check', `${severity}.d`);
    const files = await scripts(dir);
    if (files.length > maxScriptsPerDir) log?.(`${dir} holds ${files.length} scripts; only the first ${maxScriptsPerDir} in name order run`);
    for (const file of files.slice(0, maxScriptsPerDir)) {
      const base = checkName(severity, file);
      let name = base;
      for (let n = 2; names.has(name); n += 1) name = `${base.slice(0, 60)}-${n}`;
      names.add(name);
      checks.push({
        kind: 'exec',
        name,
        command: [join(settings.dir, 'check', `${severity}.d`, file)],
        severity,
        intervalSec: settings.intervalSec,
        timeoutSec: settings.timeoutSec,
        failAfter: 1,
        recoverAfter: 1,
      });
    }
  }
  return checks;
}

/** What running the green.d or red.d scripts gave, one entry per script. */
export type HookRun = { script: string; ok: true } | { script: string; ok: false; error: string };

/** Runs every script of green.d or red.d in order, each bounded; a failing one does not stop the rest. */
export async function runGreenbootHooks(settings: HealthConfig['greenboot'], which: 'green' | 'red', exec: Exec): Promise<HookRun[]> {
  const dir = join(settings.dir, `${which}.d`);
  const runs: HookRun[] = [];
  for (const file of await scripts(dir)) {
    const script = join(dir, file);
    try {
      await exec.run(script, [], { timeoutMs: settings.timeoutSec * 1000, stdout: 'discard', ownGroup: true, maxBufferBytes: scriptOutputBytes });
      runs.push({ script, ok: true });
    } catch (err) {
      runs.push({ script, ok: false, error: err instanceof Error ? err.message.split('\n')[0]! : String(err) });
    }
  }
  return runs;
}
