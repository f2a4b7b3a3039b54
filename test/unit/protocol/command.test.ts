import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { thrown } from '../../fixtures/expect-error.js';
import {
  COMMAND_MAX_BYTES,
  commandEnvelopeJsonSchema,
  commandEnvelopeSchema,
  commandResultJsonSchema,
  commandResultTopicFor,
  commandSignedSchema,
  encodeCommandResult,
  parseCommandResult,
  validateCommandResult,
  validateCommandSigned,
  type CommandResult,
  type CommandSigned,
} from '../../../runtime/protocol/index.js';

const signed: CommandSigned = {
  schema: 'outpost.command/1',
  id: 'cmd-2026-03-01:reboot.1',
  issuer: 'a'.repeat(64),
  target: { device: 'gw-1' },
  type: 'reboot',
  args: { delaySec: 5, nested: { list: [1, 'two', null] } },
  notBefore: '2026-03-01T12:00:00Z',
  expires: '2026-03-01T12:10:00.000Z',
  nonce: '0123456789abcdef'.repeat(2),
};
const envelope = { signed, signatures: [{ keyid: 'b'.repeat(64), sig: 'c'.repeat(128) }] };

const result: CommandResult = {
  schema: 'outpost.command-result/1',
  id: signed.id,
  deviceId: 'gw-1',
  type: 'reboot',
  outcome: 'succeeded',
  message: 'rebooting in 5 s',
  output: { scheduled: true },
  startedAt: '2026-03-01T12:00:01.000Z',
  finishedAt: '2026-03-01T12:00:01.250Z',
};

const invalid = (fn: () => unknown): boolean => isOutpostError(thrown(fn), 'PROTOCOL_INVALID');

t.test('the envelope round-trips through JSON', async (t) => {
  t.same(commandEnvelopeSchema.parse(JSON.parse(JSON.stringify(envelope))), envelope);
  t.same(validateCommandSigned({ ...signed, target: { group: 'site-a' }, args: {} }), { ...signed, target: { group: 'site-a' }, args: {} });
});

t.test('the signed part is strict and names the bad field', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown field (a restriction this device would ignore)', { ...signed, onlyAfter: 'x' }, /\(document\).*unrecognized|onlyAfter/i],
    ['wrong schema id', { ...signed, schema: 'outpost.command/2' }, /at schema/],
    ['id with a slash', { ...signed, id: 'a/b' }, /at id/],
    ['id too long', { ...signed, id: 'a'.repeat(129) }, /at id/],
    ['issuer upper-case', { ...signed, issuer: 'A'.repeat(64) }, /at issuer/],
    ['both device and group', { ...signed, target: { device: 'gw-1', group: 'g' } }, /at target/],
    ['group with a wildcard', { ...signed, target: { group: 'site/#' } }, /at target/],
    ['type upper-case', { ...signed, type: 'Reboot' }, /at type/],
    ['args missing', { ...signed, args: undefined }, /at args/],
    ['args an array', { ...signed, args: [] }, /at args/],
    ['local time', { ...signed, notBefore: '2026-03-01T12:00:00' }, /at notBefore/],
    ['offset instead of Z', { ...signed, expires: '2026-03-01T13:10:00+01:00' }, /at expires/],
    ['expires not after notBefore', { ...signed, expires: signed.notBefore }, /at expires: must be later than notBefore/],
    ['short nonce', { ...signed, nonce: 'ab'.repeat(15) }, /at nonce/],
    ['upper-case nonce', { ...signed, nonce: 'AB'.repeat(16) }, /at nonce/],
  ];
  for (const [name, value, where] of cases) {
    t.ok(invalid(() => validateCommandSigned(value)), name);
    t.throws(() => validateCommandSigned(value), where, `${name}: message names the field`);
  }
  t.notOk(commandEnvelopeSchema.safeParse({ ...envelope, signatures: [] }).success, 'at least one signature');
  t.notOk(commandEnvelopeSchema.safeParse({ ...envelope, signatures: Array(9).fill(envelope.signatures[0]) }).success, 'at most eight');
  t.notOk(commandEnvelopeSchema.safeParse({ ...envelope, signatures: [{ keyid: 'b'.repeat(64), sig: 'not hex' }] }).success, 'hex signatures');
});

t.test('a result round-trips through encode and parse', async (t) => {
  t.same(parseCommandResult(Buffer.from(encodeCommandResult(result))), result);
  const refusal: CommandResult = { schema: 'outpost.command-result/1', id: 'unknown', deviceId: 'gw-1', outcome: 'rejected', reason: 'malformed-json', message: 'not JSON', finishedAt: result.finishedAt };
  t.same(parseCommandResult(encodeCommandResult(refusal)), refusal);
  const expired = { ...refusal, id: signed.id, outcome: 'expired', reason: 'expired' } as const;
  t.same(parseCommandResult(encodeCommandResult(expired)), expired);
});

t.test('claimedId, the id an unauthenticated message claimed, goes only with the id unknown', async (t) => {
  const refusal: CommandResult = { schema: 'outpost.command-result/1', id: 'unknown', claimedId: signed.id, deviceId: 'gw-1', outcome: 'rejected', reason: 'bad-signature', message: 'no valid signature', finishedAt: result.finishedAt };
  t.same(parseCommandResult(encodeCommandResult(refusal)), refusal);
  t.throws(() => validateCommandResult({ ...refusal, id: signed.id }), /at claimedId: is only for a result with id unknown/);
  t.throws(() => validateCommandResult({ ...refusal, claimedId: 'a/b' }), /at claimedId/);
});

t.test('results are open for fields added later', async (t) => {
  t.same(parseCommandResult(JSON.stringify({ ...result, addedLater: 1 })), result);
});

t.test('reason is there exactly when the command was refused', async (t) => {
  t.throws(() => validateCommandResult({ ...result, outcome: 'rejected' }), /at reason: is required/);
  t.throws(() => validateCommandResult({ ...result, reason: 'schema' }), /at reason: must be absent/);
  t.throws(() => validateCommandResult({ ...result, outcome: 'expired', reason: 'schema' }), /at reason/);
  t.throws(() => validateCommandResult({ ...result, outcome: 'rejected', reason: 'expired' }), /at reason/);
  t.throws(() => validateCommandResult({ ...result, outcome: 'rejected', reason: 'too-late' }), /at reason/);
});

t.test('results off the contract are not encoded; bad payloads are not parsed', async (t) => {
  t.ok(invalid(() => encodeCommandResult({ ...result, message: 'x'.repeat(1025) })));
  t.ok(invalid(() => encodeCommandResult({ ...result, outcome: 'done' as 'failed' })));
  t.ok(invalid(() => encodeCommandResult({ ...result, output: 'x'.repeat(COMMAND_MAX_BYTES) })), 'too large to publish');
  t.ok(invalid(() => parseCommandResult('{not json')));
  t.throws(() => parseCommandResult(' '.repeat(COMMAND_MAX_BYTES + 1)), /more than/);
  t.throws(() => validateCommandResult({ ...result, finishedAt: undefined }), /at finishedAt/);
});

t.test('the result goes to the Response Topic only when it is a plain topic at or below this device\'s own cmd/result', async (t) => {
  const fallback = 'outpost/v1/gw-1/cmd/result';
  t.equal(commandResultTopicFor('gw-1', undefined), fallback);
  t.equal(commandResultTopicFor('gw-1', fallback), fallback);
  t.equal(commandResultTopicFor('gw-1', `${fallback}/ops/42`), `${fallback}/ops/42`);
  t.equal(commandResultTopicFor('gw-1', `${fallback}/${'x'.repeat(229)}`).length, 256, '256 bytes is still fine');
  const elsewhere = ['other/tree', 'outpost/v1/ops/replies', 'outpost/v1/gw-2/cmd/result', 'outpost/v1/gw-1/state', 'outpost/v1/gw-1/events', 'outpost/v1/gw-1/cmd', 'outpost/v1/gw-1/cmd/results', 'outpost/v1/gw-10/cmd/result/x', 'outpost/v1/group/site-a/cmd'];
  const malformed = [`${fallback}/`, `${fallback}//x`, `${fallback}/+`, `${fallback}/#`, `${fallback}/a\u0000b`, `${fallback}/\ud800`, `${fallback}/${'x'.repeat(230)}`];
  for (const topic of [...elsewhere, ...malformed]) t.equal(commandResultTopicFor('gw-1', topic), fallback, JSON.stringify(topic.slice(0, 40)));
});

t.test('JSON Schemas are generated from the zod schemas', async (t) => {
  const env = commandEnvelopeJsonSchema();
  t.equal(env['$schema'], 'https://json-schema.org/draft/2020-12/schema');
  t.equal(env['title'], 'outpost.command/1');
  const signedSchema = (env['properties'] as Record<string, Record<string, unknown>>)['signed'];
  t.equal(signedSchema?.['additionalProperties'], false, 'the signed part is closed');
  t.same(signedSchema?.['required'], Object.keys(commandSignedSchema.shape));
  const res = commandResultJsonSchema();
  t.equal(res['title'], 'outpost.command-result/1');
  t.notOk('additionalProperties' in res, 'the result stays open for additions');
  t.same(res['required'], ['schema', 'id', 'deviceId', 'outcome', 'message', 'finishedAt']);
});
