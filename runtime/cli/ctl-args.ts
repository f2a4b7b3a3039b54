/** Small readers for `outpostctl` option values: required, repeated, integer. Usage errors exit 64. */
import { OutpostError } from '../errors.js';
import { readPrivateKeyFile, type PrivateKey } from '../trust/index.js';
import type { CommandContext, OptionSpec } from './command.js';

type Values = CommandContext['values'];

/** A string option that must be present. */
export function requiredString(values: Values, name: string): string {
  const value = values[name];
  if (typeof value === 'string' && value.length > 0) return value;
  if (Array.isArray(value) && value.length > 0) return value[value.length - 1] ?? '';
  throw new OutpostError('USAGE', `--${name} is required`);
}

/** A string option that may be absent. */
export function optionalString(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A repeatable string option; `min` occurrences required. */
export function strings(values: Values, name: string, min = 0): string[] {
  const value = values[name];
  const list = Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
  if (list.length < min) throw new OutpostError('USAGE', `--${name} is required${min > 1 ? ` at least ${min} times` : ''}`);
  return list;
}

/** A positive integer option, or undefined when absent. */
export function positiveInt(values: Values, name: string): number | undefined {
  const value = optionalString(values, name);
  if (value === undefined) return undefined;
  if (!/^[1-9]\d{0,5}$/.test(value)) throw new OutpostError('USAGE', `--${name} must be a positive integer, got "${value}"`);
  return Number(value);
}

/** One of a fixed set of words. */
export function oneOf<const T extends string>(values: Values, name: string, allowed: readonly T[]): T {
  const value = requiredString(values, name);
  if (!(allowed as readonly string[]).includes(value)) throw new OutpostError('USAGE', `--${name} must be one of ${allowed.join(', ')}, got "${value}"`);
  return value as T;
}

/** A FILE option. */
export const fileOption = (description: string, multiple = false): OptionSpec => ({ type: 'string', valueName: 'FILE', description, ...(multiple ? { multiple: true } : {}) });

/** The keys that re-sign targets, snapshot and timestamp when targets change. */
export const signingOptions = {
  'targets-key': fileOption('private targets key'),
  'snapshot-key': fileOption('private snapshot key'),
  'timestamp-key': fileOption('private timestamp key'),
};

/** Reads the keys {@link signingOptions} name. */
export async function readSigningKeys(values: Values): Promise<{ targetsKey: PrivateKey; snapshotKey: PrivateKey; timestampKey: PrivateKey }> {
  const [targetsKey, snapshotKey, timestampKey] = await Promise.all(['targets-key', 'snapshot-key', 'timestamp-key'].map((k) => readPrivateKeyFile(requiredString(values, k))));
  if (!targetsKey || !snapshotKey || !timestampKey) throw new OutpostError('INTERNAL', 'signing keys missing after reading');
  return { targetsKey, snapshotKey, timestampKey };
}
