import t from 'tap';
import { createHash } from 'node:crypto';
import { canonicalize, generateKey, keyIdOf, privateKeyFromSeed, publicOf, sign, verify, toHex } from '../../../runtime/trust/index.js';

t.test('RFC 8032 test vector 1 (empty message)', async (t) => {
  const key = privateKeyFromSeed(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
  t.equal(toHex(key.publicKey), 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
  const sig = sign(key, new Uint8Array());
  t.equal(sig.sig, 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b');
  t.ok(verify(toHex(key.publicKey), new Uint8Array(), sig.sig));
});

t.test('keyid is sha256 of the canonical key object', async (t) => {
  const key = generateKey();
  t.same(key.key, { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: toHex(key.publicKey) } });
  const expected = createHash('sha256').update(canonicalize(key.key)).digest('hex');
  t.equal(key.keyid, expected);
  t.equal(keyIdOf(key.key), expected);
  t.match(key.keyid, /^[0-9a-f]{64}$/);
  t.notOk('secretKey' in publicOf(key), 'the public half carries no secret');
});

t.test('sign and verify; any change or the wrong key fails; malformed input is false, not a throw', async (t) => {
  const a = generateKey();
  const b = generateKey();
  const msg = new TextEncoder().encode('{"signed":true}');
  const sig = sign(a, msg);
  t.equal(sig.keyid, a.keyid);
  t.ok(verify(toHex(a.publicKey), msg, sig.sig));
  t.ok(verify(toHex(a.publicKey).toUpperCase(), msg, sig.sig.toUpperCase()), 'hex case does not matter');
  t.notOk(verify(toHex(b.publicKey), msg, sig.sig), 'other key');
  const tampered = msg.slice();
  tampered[0] = 0x5b;
  t.notOk(verify(toHex(a.publicKey), tampered, sig.sig), 'tampered message');
  const flipped = `${sig.sig.slice(0, -2)}${sig.sig.endsWith('00') ? '01' : '00'}`;
  t.notOk(verify(toHex(a.publicKey), msg, flipped), 'tampered signature');
  t.notOk(verify('zz', msg, sig.sig), 'bad public key hex');
  t.notOk(verify(toHex(a.publicKey), msg, sig.sig.slice(2)), 'short signature');
  t.notOk(verify(toHex(a.publicKey), msg, ''), 'empty signature');
});

t.test('seeds are deterministic and validated', async (t) => {
  const seed = new Uint8Array(32).fill(7);
  t.equal(privateKeyFromSeed(seed).keyid, privateKeyFromSeed(seed).keyid);
  t.throws(() => privateKeyFromSeed(new Uint8Array(31)), /32 bytes/);
});
