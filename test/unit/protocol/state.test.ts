import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { thrown } from '../../fixtures/expect-error.js';
import {
  STATE_MAX_BYTES,
  encodeStateDocument,
  parseStateDocument,
  stateJsonSchema,
  validateStateDocument,
  type StateDocument,
} from '../../../runtime/protocol/index.js';

const good: StateDocument = {
  schema: 'outpost.state/1',
  deviceId: 'gw-1',
  version: '0.1.0',
  bootedCommit: 'a'.repeat(64),
  health: 'ok',
  updatedAt: '2026-01-02T03:04:05.678Z',
};

const invalid = (fn: () => unknown): boolean => isOutpostError(thrown(fn), 'PROTOCOL_INVALID');

t.test('accepts minimal and full documents', async (t) => {
  const { bootedCommit: _omit, ...minimal } = good;
  t.same(validateStateDocument(minimal), minimal);
  t.same(validateStateDocument({ ...good, bootedCommit: null }), { ...good, bootedCommit: null });
  const withUpdate = { ...good, update: { phase: 'downloading', bytes: 10 } };
  t.same(parseStateDocument(JSON.stringify(withUpdate)), withUpdate);
});

t.test('round-trips through encode and parse', async (t) => {
  t.same(parseStateDocument(Buffer.from(encodeStateDocument(good))), good);
});

t.test('unknown fields are ignored, not rejected (forward compatibility)', async (t) => {
  t.same(parseStateDocument(JSON.stringify({ ...good, addedInNewerVersion: 1 })), good);
});

t.test('rejects bad documents, naming the field', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['wrong schema id', { ...good, schema: 'outpost.state/2' }, /at schema/],
    ['missing deviceId', { ...good, deviceId: undefined }, /at deviceId/],
    ['deviceId with a slash', { ...good, deviceId: 'a/b' }, /at deviceId/],
    ['empty version', { ...good, version: '' }, /at version/],
    ['unknown health', { ...good, health: 'great' }, /at health/],
    ['numeric commit', { ...good, bootedCommit: 42 }, /at bootedCommit/],
    ['update not an object', { ...good, update: 'x' }, /at update/],
    ['local time without zone', { ...good, updatedAt: '2026-01-02T03:04:05' }, /at updatedAt/],
    ['not an object', [1, 2], /\(document\)/],
    ['null', null, /\(document\)/],
  ];
  for (const [name, value, where] of cases) {
    t.ok(invalid(() => validateStateDocument(value)), name);
    t.throws(() => validateStateDocument(value), where, `${name}: message names the field`);
  }
});

t.test('rejects non-JSON and oversized payloads before parsing', async (t) => {
  t.ok(invalid(() => parseStateDocument('{not json')));
  t.throws(() => parseStateDocument(' '.repeat(STATE_MAX_BYTES + 1)), /more than/);
});

t.test('encode refuses documents off the contract', async (t) => {
  t.ok(invalid(() => encodeStateDocument({ ...good, health: 'bad' as 'ok' })));
});

t.test('JSON Schema is generated from the zod schema and stays open for additions', async (t) => {
  const schema = stateJsonSchema();
  t.equal(schema['$schema'], 'https://json-schema.org/draft/2020-12/schema');
  t.equal(schema['title'], 'outpost.state/1');
  t.same(schema['required'], ['schema', 'deviceId', 'version', 'health', 'updatedAt']);
  t.notOk('additionalProperties' in schema, 'no additionalProperties:false at the top level');
  const props = schema['properties'] as Record<string, Record<string, unknown>>;
  t.same(props['health']?.['enum'], ['ok', 'degraded', 'unknown']);
  t.equal(props['schema']?.['const'], 'outpost.state/1');
});

t.test('healthReport: the detailed summary rides beside the v1 health value; a bad one is rejected by field', async (t) => {
  const report = {
    status: 'failed' as const,
    checks: { app: { status: 'failing' as const, severity: 'required' as const, since: '2026-01-02T03:04:05.678Z', detail: 'exit code 1' } },
    attention: '3 remediation reboots within 86400 s (at most 3)',
  };
  const doc = { ...good, health: 'degraded' as const, healthReport: report };
  t.same(parseStateDocument(encodeStateDocument(doc)), doc);
  t.ok(invalid(() => validateStateDocument({ ...good, health: 'failed' })), 'health itself keeps its v1 values');
  const bad = thrown(() => validateStateDocument({ ...doc, healthReport: { ...report, checks: { app: { ...report.checks.app, status: 'broken' } } } }));
  t.match((bad as Error).message, /healthReport\.checks\.app\.status/);
});
