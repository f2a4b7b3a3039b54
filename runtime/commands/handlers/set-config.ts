/**
 * `set-config {patch}`: a JSON merge patch (RFC 7386) to the device's config overlay
 * (`<stateDir>/config.json`, layered over the image's config: config/load.ts). It takes effect at
 * the next start, so once the result is recorded and queued the daemon stops with exit code 75
 * and systemd's `Restart=on-failure` starts it again with the new config.
 *
 * Invariants:
 * - Some settings are not the fleet's to change (config/protected.ts): a patch that
 *   sets or removes one, or replaces a section holding one, fails the args schema (`bad-args`
 *   naming the field) and is never recorded as started.
 * - The overlay is written only if the whole config it makes (image config + new overlay) passes
 *   the config schema; else the command fails with the schema's `field: message` list and
 *   nothing is written. A daemon that could not start with its config would be out of reach.
 * - Persisted before acted on: the previous overlay is kept as `config.json.previous` (`{}` when
 *   there was none), then the new one replaces it, each written atomically and fsync'd; only then
 *   is the restart asked for, and only after the result is queued. A power cut before the result
 *   is recorded leaves the new overlay in effect and the command reported `interrupted`.
 * - A patch that changes nothing writes nothing and restarts nothing; one that only mends an
 *   overlay the daemon could not parse (and so runs without) writes it and restarts nothing.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { isProtectedSetting, protectedBelow } from '../../config/index.js';
import { isOutpostError } from '../../errors.js';
import { writeFileAtomic } from '../../platform/index.js';
import type { CommandHandler } from '../service.js';

/** JSON as a merge patch holds it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** RFC 7386: objects merge key by key, `null` removes a key, anything else replaces. */
export function mergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isObject(patch)) return patch;
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/**
 * The protected paths a patch touches: a key at or below one, or a key above one whose value is
 * not an object (it would replace or remove the whole section).
 */
export function protectedPathsTouched(patch: JsonObject, prefix: readonly string[] = []): string[] {
  const touched: string[] = [];
  for (const [key, value] of Object.entries(patch)) {
    const keys = [...prefix, key];
    if (isProtectedSetting(keys)) touched.push(keys.join('.'));
    else if (isObject(value)) touched.push(...protectedPathsTouched(value, keys));
    else if (protectedBelow(keys).length > 0) touched.push(keys.join('.'));
  }
  return touched;
}

const setConfigArgs = z.strictObject({
  patch: z.record(z.string(), z.json()).superRefine((patch, ctx) => {
    for (const path of protectedPathsTouched(patch as JsonObject)) ctx.addIssue({ code: 'custom', path: path.split('.'), message: 'may not be changed by a remote command (docs/protocol.md, set-config)' });
  }),
});

/** What the handler needs from the daemon. */
export interface SetConfigOptions {
  /** `<stateDir>/config.json`. */
  readonly overlayFile: string;
  /** Validates the config the daemon would load with `overlay` as its overlay; throws CONFIG_INVALID (with `problems`) if it fails. */
  readonly check: (overlay: JsonObject) => void;
  /** Stops the daemon for systemd to start it again (called after the result is queued). */
  readonly restart: (reason: string) => void;
}

/** Time the drain gets to send the result before the daemon stops (it is sent after the restart otherwise). */
const restartDelayMs = 1000;

async function readOverlay(file: string): Promise<{ text: string | undefined; doc: JsonObject; parsed: boolean }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { text: undefined, doc: {}, parsed: true };
    throw new Error(`cannot read the config overlay ${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    doc = undefined;
  }
  // The daemon runs without an overlay it cannot read (config/load.ts): the patch applies to
  // nothing, as the daemon sees it, and the unreadable text is what is kept as the previous copy.
  return isObject(doc) ? { text, doc, parsed: true } : { text, doc: {}, parsed: false };
}

function problemsText(err: unknown): string {
  const problems = isOutpostError(err) ? (err as { problems?: { field: string; message: string }[] }).problems : undefined;
  if (!problems) return err instanceof Error ? err.message : String(err);
  return problems.map((p) => `${p.field}: ${p.message}`).join('; ');
}

export function setConfigHandler(options: SetConfigOptions): CommandHandler<z.output<typeof setConfigArgs>> {
  return {
    args: setConfigArgs,
    timeoutMs: 10_000,
    async run(args, { command, whenAnswered }) {
      const current = await readOverlay(options.overlayFile);
      const next = mergePatch(current.doc, args.patch as JsonObject) as JsonObject;
      const unchanged = JSON.stringify(next) === JSON.stringify(current.doc);
      if (current.parsed && unchanged) return { changed: false, restart: false };
      try {
        options.check(next);
      } catch (err) {
        throw new Error(`refused, the patched config is invalid: ${problemsText(err)}`);
      }
      await writeFileAtomic(`${options.overlayFile}.previous`, current.text ?? '{}\n', { mode: 0o600 });
      await writeFileAtomic(options.overlayFile, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
      // An overlay it could not parse the daemon runs without: mending the file to what it runs
      // with already changes nothing a restart would show.
      if (unchanged) return { changed: true, restart: false };
      whenAnswered(() => setTimeout(() => options.restart(`set-config ${command.id}: the new config takes effect at the next start`), restartDelayMs));
      return { changed: true, restart: true };
    },
  };
}
