/**
 * Loads configuration in layers (STYLE 7): the image's file (`/etc/outpost/config.json`, or
 * `--config` / `OUTPOST_CONFIG`), then a writable overlay `<stateDir>/config.json` written on
 * the device, then directory overrides from the environment for tests and the demo.
 * Every problem is reported as `file: field.path: message`, all at once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { OutpostError } from '../errors.js';
import { isProtectedSetting, protectedBelow } from './protected.js';
import { configSchema, type Config } from './schema.js';

/** Where the configuration comes from when nothing else says. */
export const defaultConfigPath = '/etc/outpost/config.json';

/** The writable overlay's name in the state dir (the `set-config` command writes it). */
export const overlayFileName = 'config.json';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** One problem found in a config file. */
export interface ConfigProblem {
  file: string;
  field: string;
  message: string;
  /** The field's keys, for code; `field` is their dotted form, for people. */
  path?: readonly string[];
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function lineAndColumn(text: string, position: number): string {
  const before = text.slice(0, position);
  const line = before.split('\n').length;
  const column = position - before.lastIndexOf('\n');
  return `line ${line} column ${column}`;
}

function configError(problems: ConfigProblem[]): OutpostError {
  const lines = problems.map((p) => `${p.file}: ${p.field}: ${p.message}`);
  const error = new OutpostError('CONFIG_INVALID', lines.join('\n'));
  return Object.assign(error, { problems });
}

/** Reads and JSON-parses one file; `undefined` when it does not exist and is optional. */
function readJson(file: string, optional: boolean): JsonObject | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new OutpostError('CONFIG_UNREADABLE', `${file}: (file): cannot read: ${reason}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const match = /position (\d+)/.exec((err as Error).message);
    const where = match?.[1] === undefined ? '' : ` at ${lineAndColumn(text, Number(match[1]))}`;
    throw configError([{ file, field: '(root)', message: `invalid JSON${where}: ${(err as Error).message}` }]);
  }
  if (!isObject(parsed)) throw configError([{ file, field: '(root)', message: 'must be a JSON object' }]);
  return parsed;
}

/** Objects merge key by key; anything else in the overlay replaces the base value. */
function merge(base: JsonObject, overlay: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(overlay)) {
    const current = out[key];
    out[key] = isObject(current) && isObject(value) ? merge(current, value) : value;
  }
  return out;
}

function hasPath(doc: JsonObject | undefined, path: readonly PropertyKey[]): boolean {
  let node: unknown = doc;
  for (const key of path) {
    if ((!isObject(node) && !Array.isArray(node)) || !Object.hasOwn(node, String(key))) return false;
    node = (node as Record<string, unknown>)[String(key)];
  }
  return true;
}

function dotted(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(root)' : path.map(String).join('.');
}

/** One issue from zod becomes one or more problems; each unknown key is reported on its own. */
function toProblems(issue: z.core.$ZodIssue, fileOf: (path: readonly PropertyKey[]) => string): ConfigProblem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const path = [...issue.path, key];
      return { file: fileOf(path), field: dotted(path), message: 'unknown key', path: path.map(String) };
    });
  }
  const missing = issue.code === 'invalid_type' && issue.message.includes('received undefined');
  return [{ file: fileOf(issue.path), field: dotted(issue.path), message: missing ? 'is required' : issue.message, path: issue.path.map(String) }];
}

/** Validates an already-merged document; `sources` are the layers, last one wins. */
function validate(doc: JsonObject, sources: { file: string; doc: JsonObject }[]): Config {
  const result = configSchema.safeParse(doc);
  if (result.success) return Object.freeze(result.data);
  const fileOf = (path: readonly PropertyKey[]): string =>
    ([...sources].reverse().find((s) => hasPath(s.doc, path)) ?? sources[0])?.file ?? '(config)';
  throw configError(result.error.issues.flatMap((issue) => toProblems(issue, fileOf)));
}

/** Validates one file on its own, as `outpost config validate FILE` does. */
export function validateConfigFile(file: string): Config {
  const doc = readJson(file, false) ?? {};
  return validate(doc, [{ file, doc }]);
}

/** Options for loading the layered configuration. */
export interface LoadConfigOptions {
  /** Explicit path (`--config`); falls back to `OUTPOST_CONFIG`, then the default. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** Whether `<stateDir>/config.json` is layered on top (default true). */
  overlay?: boolean;
  /**
   * Layered in place of the overlay file's contents, its problems reported against the file's
   * name: `set-config` checks the overlay it would write before it writes it.
   */
  overlayDocument?: Readonly<Record<string, unknown>>;
}

/** What {@link loadConfigLayers} loaded, and what of the overlay file it left out. */
export interface LoadedConfig {
  readonly config: Config;
  /** The overlay's problems whose settings were left out (the image's value applies), for the caller to log. */
  readonly ignored: readonly ConfigProblem[];
}

/** Loads, layers and validates the configuration the daemon runs with. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  return loadConfigLayers(options).config;
}

/**
 * As {@link loadConfig}, but a problem of the overlay file does not stop the load: the overlay's
 * setting on each problem's path is left out on its own (a list as a whole) and reported in
 * `ignored`, the image's value applying; an overlay that is not JSON, or whose problem is no one
 * setting's, is left out whole. The overlay is written on the device, by `set-config` under
 * whichever release ran then; after a rollback the previous release reads keys it does not know,
 * and an agent that refused to start on them (exit 78, which systemd does not restart) could never
 * be sent the fix. Strict still: the image's file, an `overlayDocument` (set-config's check, which
 * refuses before it writes), and the protected settings (config/protected.ts: never the
 * fleet's to set, so only a hand on the device wrote them there, and leaving out one that narrows
 * what the image allows would widen it).
 */
export function loadConfigLayers(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const file = options.path ?? env.OUTPOST_CONFIG ?? defaultConfigPath;
  const base = readJson(file, false) ?? {};

  const envPaths: JsonObject = {};
  if (env.OUTPOST_STATE_DIR) envPaths.stateDir = env.OUTPOST_STATE_DIR;
  if (env.OUTPOST_RUN_DIR) envPaths.runDir = env.OUTPOST_RUN_DIR;
  const basePaths = isObject(base.paths) ? base.paths : {};
  const stateDir = envPaths.stateDir ?? basePaths.stateDir ?? '/var/lib/outpost';

  const layered = (overlay: { file: string; doc: JsonObject } | undefined): Config => {
    const sources = [{ file, doc: base }, ...(overlay ? [overlay] : [])];
    if (Object.keys(envPaths).length > 0) sources.push({ file: '(environment)', doc: { paths: envPaths } });
    return validate(sources.slice(1).reduce((merged, source) => merge(merged, source.doc), base), sources);
  };
  if (typeof stateDir !== 'string' || options.overlay === false) return { config: layered(undefined), ignored: [] };
  const overlayFile = join(stateDir, overlayFileName);
  if (options.overlayDocument !== undefined) return { config: layered({ file: overlayFile, doc: options.overlayDocument as JsonObject }), ignored: [] };

  let read: JsonObject | undefined;
  try {
    read = readJson(overlayFile, true);
  } catch (err) {
    if (!(err instanceof OutpostError)) throw err;
    const unreadable = err.code === 'CONFIG_INVALID' ? problemsOf(err).filter((problem) => problem.file === overlayFile) : [{ file: overlayFile, field: '(file)', message: err.message }];
    return { config: layered(undefined), ignored: [...unreadable, wholeOverlayIgnored(overlayFile)] };
  }
  if (read === undefined) return { config: layered(undefined), ignored: [] };
  let doc: JsonObject = read;
  const ignored: ConfigProblem[] = [];
  // Each pass leaves out at least one setting, or ends: an object replaced by a value hides its
  // own fields until the value is gone, so one pass may not show every problem.
  for (;;) {
    try {
      return { config: layered({ file: overlayFile, doc }), ignored };
    } catch (err) {
      // The overlay's own setting on each problem's path: also for a problem the image is named
      // for, a key required in a section only the overlay adds.
      const settings = problemsOf(err).flatMap((problem) => {
        const setting = settingAt(doc, problem.path ?? []);
        if (setting.length === 0) return [];
        const field = dotted(setting);
        return [{ setting, problem: { file: overlayFile, field, message: field === problem.field ? problem.message : `${problem.field}: ${problem.message}` } }];
      });
      // Never one that is, or holds, a protected setting the overlay sets.
      if (settings.some(({ setting }) => isProtectedSetting(setting) || protectedBelow(setting).some((p) => hasPath(doc, p)))) throw err;
      const pruned = settings.reduce<JsonObject>((left, { setting }) => without(left, setting), doc);
      if (pruned !== doc) {
        ignored.push(...settings.map(({ problem }) => problem));
        doc = pruned;
        continue;
      }
      // No setting of the overlay's on the way (a rule across fields, or the image's own fault):
      // the whole overlay, unless that would leave out a protected setting with it.
      if (protectedBelow([]).some((p) => hasPath(read, p))) throw err;
      return { config: layered(undefined), ignored: [...ignored, wholeOverlayIgnored(overlayFile)] };
    }
  }
}

/** The longest start of `path` that `doc` sets: the setting to leave out for it (a list as a whole). */
function settingAt(doc: JsonObject, path: readonly string[]): string[] {
  const setting: string[] = [];
  let node: Json = doc;
  for (const key of path) {
    if (!isObject(node) || !Object.hasOwn(node, key)) break;
    setting.push(key);
    node = node[key] as Json;
    if (Array.isArray(node)) break;
  }
  return setting;
}

const wholeOverlayIgnored = (file: string): ConfigProblem => ({ file, field: '(root)', message: 'the whole overlay is ignored' });

/** The problems an invalid config's error names; rethrows anything else. */
function problemsOf(err: unknown): ConfigProblem[] {
  if (!(err instanceof OutpostError) || err.code !== 'CONFIG_INVALID') throw err;
  return (err as OutpostError & { problems?: ConfigProblem[] }).problems ?? [];
}

/** `doc` without the value at `path` (a list as a whole); `doc` itself when there is none. */
function without(doc: JsonObject, path: readonly string[]): JsonObject {
  const [key, ...rest] = path;
  if (key === undefined || !Object.hasOwn(doc, key)) return doc;
  const { [key]: value, ...others } = doc;
  if (rest.length === 0 || !isObject(value)) return others;
  const child = without(value, rest);
  return child === value ? doc : { ...others, [key]: child };
}
