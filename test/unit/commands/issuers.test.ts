import t from 'tap';
import { COMMAND_ISSUERS_TARGET, emptyIssuers, issuersFromJson, issuersFromTargets } from '../../../runtime/commands/index.js';
import { generateKey, type PrivateKey } from '../../../runtime/trust/index.js';
import { TrustedTargets, type TargetsSigned } from '../../../runtime/update/tuf/index.js';

const entry = (key: PrivateKey, extra: Record<string, unknown> = {}) => ({ key: key.key, types: ['reboot', 'diagnostics'], maxValiditySec: 3600, ...extra });

function targets(files: Record<string, unknown>): TrustedTargets {
  const signed = { _type: 'targets', spec_version: '1.0.31', version: 1, expires: '2099-01-01T00:00:00Z', targets: files } as unknown as TargetsSigned;
  return new TrustedTargets(signed, { root: 1, timestamp: 1, snapshot: 1, targets: 1 }, new Date());
}

const issuersTarget = (custom: unknown) => ({ [COMMAND_ISSUERS_TARGET]: { length: 0, hashes: { sha256: '0'.repeat(64) }, custom } });

t.test('parses the issuers target: keys, types, validity, targets defaulting to both kinds', async (t) => {
  const a = generateKey();
  const b = generateKey();
  const custom = { schema: 'outpost.command-issuers/1', issuers: { [a.keyid]: entry(a), [b.keyid]: entry(b, { types: ['reboot'], targets: ['device'] }) }, revoked: [] };
  const result = issuersFromTargets(targets(issuersTarget(custom)));
  if (!result.ok) throw new Error(result.reason);
  t.equal(result.issuers.size, 2);
  t.match(result.issuers.get(a.keyid), { keyid: a.keyid, key: a.key, types: ['reboot', 'diagnostics'], maxValiditySec: 3600, targets: ['device', 'group'] });
  t.same(result.issuers.get(b.keyid)?.targets, ['device']);
  t.equal(result.issuers.get(generateKey().keyid), undefined, 'a key not listed is unknown');
  t.notOk(result.issuers.isRevoked(a.keyid));
});

t.test('a key id that is not the key\'s own refuses the whole set, naming it', async (t) => {
  const a = generateKey();
  const b = generateKey();
  const result = issuersFromJson({ schema: 'outpost.command-issuers/1', issuers: { [a.keyid]: entry(a), [b.keyid]: entry(a) }, revoked: [] });
  t.equal(result.ok, false);
  t.match(!result.ok && result.reason, new RegExp(`issuer ${b.keyid}: its key's id is ${a.keyid}`));
});

t.test('revoked keys are refused even when still listed, and do not count', async (t) => {
  const a = generateKey();
  const b = generateKey();
  const result = issuersFromJson({ schema: 'outpost.command-issuers/1', issuers: { [a.keyid]: entry(a), [b.keyid]: entry(b) }, revoked: [b.keyid, generateKey().keyid] });
  if (!result.ok) throw new Error(result.reason);
  t.ok(result.issuers.isRevoked(b.keyid));
  t.equal(result.issuers.get(b.keyid), undefined);
  t.equal(result.issuers.size, 1);
});

t.test('no issuers target: an empty set, not an error', async (t) => {
  const result = issuersFromTargets(targets({}));
  t.same(result.ok, true);
  t.equal(result.ok && result.issuers.size, 0);
  t.equal(emptyIssuers.size, 0);
  t.equal(emptyIssuers.get('a'.repeat(64)), undefined);
});

t.test('malformed documents are refused with the field', async (t) => {
  const a = generateKey();
  const good = { schema: 'outpost.command-issuers/1', issuers: { [a.keyid]: entry(a) }, revoked: [] };
  const cases: Array<[string, unknown, RegExp]> = [
    ['wrong schema id', { ...good, schema: 'outpost.command-issuers/2' }, /schema/],
    ['not ed25519', { ...good, issuers: { [a.keyid]: entry(a, { key: { ...a.key, keytype: 'rsa' } }) } }, /key\.keytype/],
    ['no types', { ...good, issuers: { [a.keyid]: entry(a, { types: [] }) } }, /types/],
    ['validity beyond 30 days', { ...good, issuers: { [a.keyid]: entry(a, { maxValiditySec: 30 * 86400 + 1 }) } }, /maxValiditySec/],
    ['fractional validity', { ...good, issuers: { [a.keyid]: entry(a, { maxValiditySec: 1.5 }) } }, /maxValiditySec/],
    ['unknown target kind', { ...good, issuers: { [a.keyid]: entry(a, { targets: ['fleet'] }) } }, /targets/],
    ['unknown field (could be a restriction)', { ...good, issuers: { [a.keyid]: entry(a, { onlyAt: 'night' }) } }, /onlyAt|unrecognized/i],
    ['revoked not key ids', { ...good, revoked: ['x'] }, /revoked/],
    ['missing revoked', { schema: good.schema, issuers: good.issuers }, /revoked/],
  ];
  for (const [name, value, where] of cases) {
    const result = issuersFromJson(value);
    t.equal(result.ok, false, name);
    t.match(!result.ok && result.reason, where, `${name}: the reason names the field`);
  }
});
