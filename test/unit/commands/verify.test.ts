import t, { type Test } from 'tap';
import { z } from 'zod';
import { issuersFromJson, newCommand, signCommand, verifyCommand, type IssuerSet, type NewCommand, type Verdict, type VerifyContext } from '../../../runtime/commands/index.js';
import { COMMAND_MAX_BYTES, commandRejections, type CommandEnvelope, type CommandRejection, type CommandSigned } from '../../../runtime/protocol/index.js';
import { canonicalBytes, generateKey, sign } from '../../../runtime/trust/index.js';

const now = new Date('2026-03-01T12:00:00.000Z');
const alice = generateKey(); // reboot + diagnostics, device or group, 1 h
const bob = generateKey(); // reboot only, devices only, 1 h
const revoked = generateKey();
const stranger = generateKey();

function issuers(): IssuerSet {
  const result = issuersFromJson({
    schema: 'outpost.command-issuers/1',
    issuers: {
      [alice.keyid]: { key: alice.key, types: ['reboot', 'diagnostics'], maxValiditySec: 3600 },
      [bob.keyid]: { key: bob.key, types: ['reboot'], maxValiditySec: 3600, targets: ['device'] },
      [revoked.keyid]: { key: revoked.key, types: ['reboot'], maxValiditySec: 3600 },
    },
    revoked: [revoked.keyid],
  });
  if (!result.ok) throw new Error(result.reason);
  return result.issuers;
}

/** A context that counts what each stage consulted, so a test can show later stages never ran. */
function context(overrides: Partial<VerifyContext> & { replay?: 'id' | 'nonce' } = {}) {
  const calls = { revoked: 0, issuer: 0, seen: 0, types: 0, args: 0 };
  const set = issuers();
  const counted: IssuerSet = {
    get: (keyid) => (calls.issuer++, set.get(keyid)),
    isRevoked: (keyid) => (calls.revoked++, set.isRevoked(keyid)),
    size: set.size,
  };
  const counting = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (calls.args++, v), schema);
  const schemas = new Map<string, z.ZodType>([
    ['reboot', counting(z.object({ delaySec: z.number().int().min(0).default(0) }).strict())],
    ['diagnostics', counting(z.object({}).strict())],
    ['format-disk', counting(z.object({}).strict())],
  ]);
  const argsSchemas: ReadonlyMap<string, z.ZodType> = { get: (type: string) => (calls.types++, schemas.get(type)) } as ReadonlyMap<string, z.ZodType>;
  const ctx: VerifyContext = {
    deviceId: 'gw-1',
    groups: ['site-a'],
    issuers: counted,
    now,
    skewMs: 60_000,
    seen: async () => (calls.seen++, overrides.replay),
    argsSchemas,
    ...overrides,
  };
  return { ctx, calls };
}

const command = (overrides: Partial<NewCommand> = {}): CommandSigned =>
  newCommand({ id: 'cmd-1', issuer: alice.keyid, target: { device: 'gw-1' }, type: 'reboot', args: { delaySec: 5 }, validitySec: 600, now, ...overrides });

const bytes = (value: unknown) => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
const signedBy = (signed: CommandSigned, key = alice) => bytes(signCommand(signed, key));

/** Signs any value as-is (signCommand refuses what is off the contract). */
function rawEnvelope(signed: Record<string, unknown>, key = alice): CommandEnvelope {
  return { signed: signed as CommandSigned, signatures: [sign(key, canonicalBytes(signed))] };
}

function refused(t: Test, verdict: Verdict, reason: CommandRejection): void {
  t.equal(verdict.ok, false, `refused as ${reason}`);
  if (!verdict.ok) t.equal(verdict.reason, reason);
}

t.test('a valid command passes, frozen, with its args as their schema parsed them', async (t) => {
  const { ctx, calls } = context();
  const signed = command({ args: {} });
  const verdict = await verifyCommand(signedBy(signed), ctx);
  if (!verdict.ok) throw new Error(`${verdict.reason}: ${verdict.message}`);
  t.same(verdict.command, signed);
  t.same(verdict.args, { delaySec: 0 }, 'the default applied');
  t.ok(Object.isFrozen(verdict.command) && Object.isFrozen(verdict.command.target));
  t.same(calls, { revoked: 1, issuer: 1, seen: 1, types: 1, args: 1 });
});

t.test('a group target is accepted for a group this device is in, when the issuer may address groups', async (t) => {
  t.ok((await verifyCommand(signedBy(command({ target: { group: 'site-a' } })), context().ctx)).ok);
  const other = await verifyCommand(signedBy(command({ target: { group: 'site-b' } })), context().ctx);
  refused(t, other, 'wrong-target');
  const bobs = await verifyCommand(signedBy(command({ issuer: bob.keyid, target: { group: 'site-a' } }), bob), context().ctx);
  refused(t, bobs, 'wrong-target');
  t.match(!bobs.ok && bobs.message, /may not address a group/);
});

t.test('each refusal has its reason, and nothing after its stage ran', async (t) => {
  const none = { revoked: 0, issuer: 0, seen: 0, types: 0, args: 0 };
  const parsed = { ...none, revoked: 1, issuer: 1 };
  const valid = command();
  const cases: Array<{ name: string; reason: CommandRejection; raw: Uint8Array; ctx?: Partial<VerifyContext> & { replay?: 'id' | 'nonce' }; calls: typeof none; readable: boolean; authentic: boolean }> = [
    { name: 'too large', reason: 'oversized', raw: new Uint8Array(COMMAND_MAX_BYTES + 1), calls: none, readable: false, authentic: false },
    { name: 'over a smaller maxBytes', reason: 'oversized', raw: signedBy(valid), ctx: { maxBytes: 100 }, calls: none, readable: false, authentic: false },
    { name: 'not JSON', reason: 'malformed-json', raw: bytes('{"signed":'), calls: none, readable: false, authentic: false },
    { name: 'not UTF-8', reason: 'malformed-json', raw: new Uint8Array([0x22, 0xff, 0x22]), calls: none, readable: false, authentic: false },
    // Off the contract, so signed as-is (signCommand refuses it).
    { name: 'a bad field', reason: 'schema', raw: bytes(rawEnvelope({ ...valid, nonce: 'xyz' })), calls: none, readable: true, authentic: false },
    { name: 'revoked issuer', reason: 'revoked-issuer', raw: signedBy(command({ issuer: revoked.keyid }), revoked), calls: { ...none, revoked: 1 }, readable: true, authentic: false },
    { name: 'unknown issuer', reason: 'unknown-issuer', raw: signedBy(command({ issuer: stranger.keyid }), stranger), calls: parsed, readable: true, authentic: false },
    { name: 'signed by another issuer', reason: 'bad-signature', raw: signedBy(valid, bob), calls: parsed, readable: true, authentic: false },
    { name: 'another device', reason: 'wrong-target', raw: signedBy(command({ target: { device: 'gw-2' } })), calls: parsed, readable: true, authentic: true },
    { name: "a window beyond the issuer's", reason: 'validity-too-long', raw: signedBy(command({ validitySec: 3601 })), calls: parsed, readable: true, authentic: true },
    { name: 'expired', reason: 'expired', raw: signedBy(command({ now: new Date(now.getTime() - 600_000) })), calls: parsed, readable: true, authentic: true },
    { name: 'not yet valid beyond the skew', reason: 'not-yet-valid', raw: signedBy(command({ now: new Date(now.getTime() + 60_001) })), calls: parsed, readable: true, authentic: true },
    { name: 'id seen', reason: 'replayed-id', raw: signedBy(valid), ctx: { replay: 'id' }, calls: { ...parsed, seen: 1 }, readable: true, authentic: true },
    { name: 'nonce seen', reason: 'replayed-nonce', raw: signedBy(valid), ctx: { replay: 'nonce' }, calls: { ...parsed, seen: 1 }, readable: true, authentic: true },
    { name: 'a type the device lacks', reason: 'unknown-type', raw: signedBy(command({ type: 'self-destruct' })), calls: { ...parsed, seen: 1, types: 1 }, readable: true, authentic: true },
    { name: 'a type the issuer may not send', reason: 'type-not-allowed', raw: signedBy(command({ type: 'format-disk', args: {} })), calls: { ...parsed, seen: 1, types: 1 }, readable: true, authentic: true },
    { name: 'args off their schema', reason: 'bad-args', raw: signedBy(command({ args: { delaySec: -1 } })), calls: { ...parsed, seen: 1, types: 1, args: 1 }, readable: true, authentic: true },
  ];
  t.same([...new Set(cases.map((c) => c.reason))].sort(), [...commandRejections].sort(), 'every reason code has a case');
  for (const c of cases) {
    const { ctx, calls } = context(c.ctx ?? {});
    const verdict = await verifyCommand(c.raw, ctx);
    refused(t, verdict, c.reason);
    t.same(calls, c.calls, `${c.name}: later stages not consulted`);
    if (verdict.ok) continue;
    t.equal(verdict.authentic, c.authentic, `${c.name}: authentic ${c.authentic}`);
    t.equal(verdict.command !== undefined, c.authentic, `${c.name}: the signed part is handed back only when authentic`);
    t.ok(verdict.message.length > 0 && verdict.message.length <= 1024, `${c.name}: a message that fits a result`);
    t.equal(verdict.id, c.readable ? 'cmd-1' : undefined, `${c.name}: the id, once readable`);
  }
});

t.test('messages name what failed', async (t) => {
  const schema = await verifyCommand(bytes(rawEnvelope({ ...command(), target: { device: 'gw-1', group: 'x' } })), context().ctx);
  t.match(!schema.ok && schema.message, /signed\.target/);
  t.equal(!schema.ok && schema.type, 'reboot', 'the type too, when readable');
  const args = await verifyCommand(signedBy(command({ args: { delaySec: 'soon' } })), context().ctx);
  t.match(!args.ok && args.message, /signed\.args\.delaySec/);
  const unreadable = await verifyCommand(bytes({ signed: { id: 'has a space', type: 'Reboot' }, signatures: [] }), context().ctx);
  t.same(!unreadable.ok && [unreadable.reason, unreadable.id, unreadable.type], ['schema', undefined, undefined], 'an id or type off its pattern is not echoed');
  const huge = await verifyCommand(bytes(rawEnvelope({ ...command(), args: { ['k'.repeat(5000)]: 1 } })), context().ctx);
  t.ok(!huge.ok && huge.message.length <= 1024, 'a message stays within a result\'s limit');
});

t.test('skew tolerates an issuer clock a little ahead, for notBefore only', async (t) => {
  const ahead = command({ now: new Date(now.getTime() + 59_000) });
  t.ok((await verifyCommand(signedBy(ahead), context().ctx)).ok, 'notBefore 59 s ahead, skew 60 s');
  refused(t, await verifyCommand(signedBy(ahead), context({ skewMs: 0 }).ctx), 'not-yet-valid');
  const justExpired = command({ now: new Date(now.getTime() - 600_000 + 1) });
  t.ok((await verifyCommand(signedBy(justExpired), context().ctx)).ok, '1 ms before expiry');
  refused(t, await verifyCommand(signedBy(justExpired), context({ now: new Date(now.getTime() + 1) }).ctx), 'expired');
});

t.test('the reference time is never earlier than notEarlierThan (no RTC: the clock may start in the past)', async (t) => {
  const signed = command();
  const verdict = await verifyCommand(signedBy(signed), context({ now: new Date('2000-01-01T00:00:00Z'), notEarlierThan: new Date(now.getTime() + 600_000) }).ctx);
  refused(t, verdict, 'expired');
  t.ok((await verifyCommand(signedBy(signed), context({ notEarlierThan: new Date('2000-01-01T00:00:00Z') }).ctx)).ok, 'an older floor does not matter');
});

t.test("a signature over the right bytes under another key id does not count; the issuer's among others does", async (t) => {
  const signed = command();
  const byBob = sign(bob, canonicalBytes(signed));
  refused(t, await verifyCommand(bytes({ signed, signatures: [{ keyid: alice.keyid, sig: byBob.sig }] }), context().ctx), 'bad-signature');
  refused(t, await verifyCommand(bytes({ signed, signatures: [byBob] }), context().ctx), 'bad-signature');
  const byAlice = sign(alice, canonicalBytes(signed));
  t.ok((await verifyCommand(bytes({ signed, signatures: [byBob, byAlice] }), context().ctx)).ok);
  t.ok((await verifyCommand(bytes({ signed, signatures: [{ ...byAlice, sig: byAlice.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')) }, byAlice] }), context().ctx)).ok, 'a broken copy before it is ignored');
});

t.test('changing any signed field after signing breaks the signature', async (t) => {
  const envelope = signCommand(command(), alice);
  const changes: Record<string, unknown> = {
    id: 'cmd-2',
    target: { group: 'site-a' },
    type: 'diagnostics',
    args: { delaySec: 6 },
    notBefore: new Date(now.getTime() - 1000).toISOString(),
    expires: new Date(now.getTime() + 599_000).toISOString(),
    nonce: 'f'.repeat(32),
  };
  for (const [field, value] of Object.entries(changes)) {
    const tampered = { ...envelope, signed: { ...envelope.signed, [field]: value } };
    refused(t, await verifyCommand(bytes(tampered), context().ctx), 'bad-signature');
  }
  const otherIssuer = { ...envelope, signed: { ...envelope.signed, issuer: bob.keyid } };
  refused(t, await verifyCommand(bytes(otherIssuer), context().ctx), 'bad-signature');
  t.ok((await verifyCommand(bytes(JSON.stringify(envelope, null, 2)), context().ctx)).ok, 'layout is not signed: canonical JSON is');
});

t.test('signed values with no canonical JSON form are refused as schema', async (t) => {
  const text = JSON.stringify(signCommand(command(), alice)).replace('"delaySec":5', '"delaySec":5.5');
  const verdict = await verifyCommand(bytes(text), context().ctx);
  refused(t, verdict, 'schema');
  t.match(!verdict.ok && verdict.message, /canonical JSON/);
});
