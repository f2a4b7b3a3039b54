/**
 * Canonical JSON as TUF signs it: the OLPC dialect (http://wiki.laptop.org/go/Canonical_JSON) as
 * securesystemslib and tuf-js (`@tufjs/canonical-json`) implement it.
 *
 * - Object keys sorted (JavaScript's default string order, i.e. UTF-16 code units, as tuf-js does;
 *   for the ASCII keys TUF metadata uses this is also securesystemslib's order), no whitespace.
 * - Only strings, integers, booleans, null, arrays and plain objects. Floats, NaN, Infinity,
 *   integers beyond 2^53, `undefined`, bigint, functions and class instances are rejected: they have
 *   no single canonical spelling, and a signature over an ambiguous encoding proves nothing.
 * - Strings escape only `\` and `"`; every other character (control characters included) is
 *   written as-is in UTF-8. That is the dialect, so its output is not always valid RFC 8259 JSON.
 * - Strings with lone UTF-16 surrogates are rejected: they would be replaced when encoded to UTF-8,
 *   so two different values would share one signature.
 */

/** Thrown for a value that has no canonical JSON form. A programming error, not bad input. */
export class CanonicalJsonError extends TypeError {
  override readonly name = 'CanonicalJsonError';
}

const loneSurrogate = /\p{Cs}/u;

function encodeString(value: string, path: string): string {
  if (loneSurrogate.test(value)) throw new CanonicalJsonError(`${path}: string has a lone UTF-16 surrogate`);
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function isPlainObject(value: object): value is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function encode(value: unknown, path: string, parts: string[]): void {
  switch (typeof value) {
    case 'string':
      parts.push(encodeString(value, path));
      return;
    case 'boolean':
      parts.push(value ? 'true' : 'false');
      return;
    case 'number':
      if (!Number.isSafeInteger(value)) throw new CanonicalJsonError(`${path}: ${value} is not an integer canonical JSON can hold (no floats)`);
      parts.push(String(Object.is(value, -0) ? 0 : value));
      return;
    case 'object': {
      if (value === null) {
        parts.push('null');
        return;
      }
      if (Array.isArray(value)) {
        parts.push('[');
        value.forEach((item: unknown, i) => {
          if (i > 0) parts.push(',');
          encode(item, `${path}[${i}]`, parts);
        });
        parts.push(']');
        return;
      }
      if (!isPlainObject(value)) throw new CanonicalJsonError(`${path}: only plain objects are canonical JSON`);
      parts.push('{');
      Object.keys(value)
        .sort()
        .forEach((key, i) => {
          if (i > 0) parts.push(',');
          parts.push(encodeString(key, `${path}.${key}`), ':');
          encode(value[key], `${path}.${key}`, parts);
        });
      parts.push('}');
      return;
    }
    default:
      throw new CanonicalJsonError(`${path}: ${typeof value} has no canonical JSON form`);
  }
}

/** The canonical JSON text of `value`; throws {@link CanonicalJsonError} for values it cannot hold. */
export function canonicalize(value: unknown): string {
  const parts: string[] = [];
  encode(value, '$', parts);
  return parts.join('');
}

/** The UTF-8 bytes of {@link canonicalize}: what TUF signs and what key ids hash. */
export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value));
}
