import t from 'tap';
import fc from 'fast-check';
import { canonicalize as tufjsCanonicalize } from '@tufjs/canonical-json';
import { canonicalize, canonicalBytes, CanonicalJsonError } from '../../../runtime/trust/index.js';

t.test('known vectors', async (t) => {
  const vectors: [unknown, string][] = [
    [{ b: 1, a: [true, false, null, 'x'] }, '{"a":[true,false,null,"x"],"b":1}'],
    [{}, '{}'],
    [[], '[]'],
    ['a"b\\c', '"a\\"b\\\\c"'],
    // Only \ and " are escaped; control characters and non-ASCII go through as-is (OLPC dialect).
    ['line\nbreak\ttab', '"line\nbreak\ttab"'],
    ['é ✓ 😀', '"é ✓ 😀"'],
    // Keys sort by code unit: upper case before lower case, "10" before "9".
    [{ a: 1, B: 2, '9': 3, '10': 4 }, '{"10":4,"9":3,"B":2,"a":1}'],
    [{ z: { y: [{ b: 0, a: -1 }] } }, '{"z":{"y":[{"a":-1,"b":0}]}}'],
    [-0, '0'],
    [Number.MAX_SAFE_INTEGER, '9007199254740991'],
    [Object.assign(Object.create(null) as object, { k: 'v' }), '{"k":"v"}'],
  ];
  for (const [value, expected] of vectors) t.equal(canonicalize(value), expected, JSON.stringify(value));
  t.same(Array.from(canonicalBytes('é')), [0x22, 0xc3, 0xa9, 0x22], 'UTF-8 bytes');
});

t.test('values without a canonical form are rejected', async (t) => {
  const bad: [string, unknown][] = [
    ['float', 1.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['unsafe integer', 2 ** 60],
    ['undefined', undefined],
    ['undefined member', { a: undefined }],
    ['bigint', 1n],
    ['function', () => 1],
    ['Date', new Date(0)],
    ['Map', new Map()],
    ['lone surrogate', '\ud800'],
    ['lone surrogate key', { '\udc00': 1 }],
    ['nested float', { a: [{ b: 0.1 }] }],
  ];
  for (const [name, value] of bad) t.throws(() => canonicalize(value), CanonicalJsonError, name);
  t.throws(() => canonicalize({ a: [{ b: 0.1 }] }), /\$\.a\[0\]\.b/, 'the error names the path');
});

// JSON values canonical JSON can hold; strings without control characters so JSON.parse reads them back.
const text = fc.string({ unit: 'grapheme' }).filter((s) => !/[\u0000-\u001f]/.test(s));
const value = fc.letrec((tie) => ({
  leaf: fc.oneof(text, fc.boolean(), fc.constant(null), fc.maxSafeInteger()),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 5 }), fc.dictionary(text, tie('node'), { maxKeys: 5 })),
})).node;

t.test('property: round-trips through JSON.parse and is a fixed point', async (t) => {
  fc.assert(
    fc.property(value, (v) => {
      const c = canonicalize(v);
      t.same(JSON.parse(c), v);
      return canonicalize(JSON.parse(c)) === c;
    }),
  );
});

t.test('property: key insertion order does not matter', async (t) => {
  fc.assert(
    fc.property(fc.dictionary(text, value, { maxKeys: 8 }), (obj) => {
      const reversed = Object.fromEntries(Object.entries(obj).reverse());
      return canonicalize(reversed) === canonicalize(obj);
    }),
  );
  t.pass();
});

t.test('property: an object is its sorted "key":value pairs joined by commas, nothing else', async (t) => {
  fc.assert(
    fc.property(fc.dictionary(fc.string({ unit: 'grapheme-ascii' }).filter((s) => !/["\\]/.test(s)), fc.integer(), { maxKeys: 8 }), (obj) => {
      // JSON.parse would reorder integer-like keys, so the expected text is built by hand.
      const expected = `{${Object.keys(obj)
        .sort()
        .map((k) => `"${k}":${obj[k]}`)
        .join(',')}}`;
      return canonicalize(obj) === expected;
    }),
  );
  t.pass();
});

t.test('property: identical to tuf-js canonical JSON (interop)', async (t) => {
  fc.assert(fc.property(value, (v) => canonicalize(v) === tufjsCanonicalize(v)));
  t.pass();
});
