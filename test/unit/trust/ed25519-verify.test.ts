/**
 * `verify` moved from tweetnacl to node:crypto (OpenSSL) for speed under --jitless; signing stayed
 * with tweetnacl. These tests hold the two to one contract, so a signature outpostctl makes is
 * accepted exactly when it was before, with the one documented difference (non-reduced S).
 */
import t from 'tap';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { privateKeyFromSeed, sign, toHex, verify } from '../../../runtime/trust/index.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

/** Both verifiers, on raw bytes; the runtime's takes hex as metadata carries it. */
function both(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): { nacl: boolean; ours: boolean } {
  return { nacl: nacl.sign.detached.verify(message, signature, publicKey), ours: verify(toHex(publicKey), message, toHex(signature)) };
}

// RFC 8032 §7.1, TEST 1, 2, 3 and TEST SHA(abc).
const vectors = [
  {
    name: 'TEST 1',
    secret: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    public: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2',
    secret: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    public: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    name: 'TEST 3',
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
  {
    name: 'TEST SHA(abc)',
    secret: '833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42',
    public: 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf',
    message: 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    signature: 'dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704',
  },
];

t.test('RFC 8032 §7.1 vectors: tweetnacl signs them, both verifiers accept them and reject them altered', async (t) => {
  for (const v of vectors) {
    const key = privateKeyFromSeed(hex(v.secret));
    t.equal(toHex(key.publicKey), v.public, `${v.name}: public key`);
    t.equal(sign(key, hex(v.message)).sig, v.signature, `${v.name}: signature`);
    t.same(both(hex(v.public), hex(v.message), hex(v.signature)), { nacl: true, ours: true }, `${v.name}: valid`);
    const message = Uint8Array.from([...hex(v.message), 0]);
    t.same(both(hex(v.public), message, hex(v.signature)), { nacl: false, ours: false }, `${v.name}: a byte appended to the message`);
    for (const at of [0, 31, 32, 63]) {
      const signature = hex(v.signature);
      signature[at]! ^= 0x01;
      t.same(both(hex(v.public), hex(v.message), signature), { nacl: false, ours: false }, `${v.name}: signature bit flipped at byte ${at}`);
    }
  }
});

t.test('agreement on random keys, messages and single-bit changes', async (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 600 }),
      fc.nat(),
      fc.nat(7),
      (seed, otherSeed, message, at, bit) => {
        const key = nacl.sign.keyPair.fromSeed(seed);
        const other = nacl.sign.keyPair.fromSeed(otherSeed);
        const signature = nacl.sign.detached(message, key.secretKey);
        const cases: Array<[Uint8Array, Uint8Array, Uint8Array]> = [[key.publicKey, message, signature], [other.publicKey, message, signature]];
        const flippedSig = signature.slice();
        flippedSig[at % 64]! ^= 1 << bit;
        cases.push([key.publicKey, message, flippedSig]);
        const flippedKey = key.publicKey.slice();
        flippedKey[at % 32]! ^= 1 << bit;
        cases.push([flippedKey, message, signature]);
        if (message.length > 0) {
          const flippedMessage = message.slice();
          flippedMessage[at % message.length]! ^= 1 << bit;
          cases.push([key.publicKey, flippedMessage, signature]);
        }
        return cases.every(([p, m, s]) => {
          const r = both(p, m, s);
          return r.nacl === r.ours;
        }) && verify(toHex(key.publicKey), message, toHex(signature));
      },
    ),
    { numRuns: 200 },
  );
  t.pass('node:crypto and tweetnacl agreed on every case');
});

t.test('wrong key, malformed hex and wrong lengths are false, never a throw', async (t) => {
  const v = vectors[2]!;
  const other = vectors[1]!.public;
  t.notOk(verify(other, hex(v.message), v.signature), 'another valid key');
  t.notOk(nacl.sign.detached.verify(hex(v.message), hex(v.signature), hex(other)), 'tweetnacl: another valid key');
  t.ok(verify(v.public.toUpperCase(), hex(v.message), v.signature.toUpperCase()), 'hex case does not matter');
  const bad: Array<[string, string, string]> = [
    ['public key not hex', `zz${v.public.slice(2)}`, v.signature],
    ['signature not hex', v.public, `${v.signature.slice(0, -2)}g0`],
    ['public key odd length', v.public.slice(1), v.signature],
    ['public key 31 bytes', v.public.slice(2), v.signature],
    ['public key 33 bytes', `${v.public}00`, v.signature],
    ['signature 63 bytes', v.public, v.signature.slice(2)],
    ['signature 65 bytes', v.public, `${v.signature}00`],
    ['empty public key', '', v.signature],
    ['empty signature', v.public, ''],
    ['whitespace', ` ${v.public.slice(1)}`, v.signature],
    ['0x prefix', `0x${v.public.slice(2)}`, v.signature],
  ];
  for (const [name, publicKey, signature] of bad) {
    t.doesNotThrow(() => verify(publicKey, hex(v.message), signature), name);
    t.notOk(verify(publicKey, hex(v.message), signature), name);
  }
  // tweetnacl throws on wrong lengths (its callers must check them); ours answers false.
  t.throws(() => nacl.sign.detached.verify(hex(v.message), hex(v.signature).slice(1), hex(v.public)), 'tweetnacl throws on a 63-byte signature');
});

t.test('keys that are not points on the curve, or not canonical, are false for both', async (t) => {
  const v = vectors[0]!;
  // y = 2 has no x on the curve; p + 1 encodes y = 1 non-canonically; all 0xff is y >= p with the sign bit.
  const keys = ['02'.padEnd(64, '0'), 'ee'.concat('ff'.repeat(30), '7f'), 'ff'.repeat(32), '00'.repeat(32), '01'.padEnd(64, '0')];
  for (const key of keys) {
    const r = both(hex(key), hex(v.message), hex(v.signature));
    t.same(r, { nacl: false, ours: false }, `public key ${key}`);
  }
  const signature = hex(v.signature);
  signature.fill(0xff, 0, 32);
  t.same(both(hex(v.public), hex(v.message), signature), { nacl: false, ours: false }, 'R not a point');
});

t.test('a non-reduced S (S + L) is rejected by node:crypto; tweetnacl accepts it', async (t) => {
  // RFC 8032 §5.1.7 requires rejecting S >= L (signature malleability). OpenSSL does; tweetnacl
  // multiplies by S unreduced, so S + L gives the same point and it accepts: verification is now
  // stricter than before, and only for signatures no RFC 8032 signer (tweetnacl included) makes.
  // Nothing outpost checks depends on a signature's bytes being unique: TUF counts keys, not
  // signatures, and commands are deduplicated by id.
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  const le = (b: Uint8Array): bigint => b.reduceRight((x, byte) => (x << 8n) | BigInt(byte), 0n);
  const toLe = (x: bigint): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => Number((x >> BigInt(8 * i)) & 0xffn));
  for (const v of vectors) {
    const signature = hex(v.signature);
    const s = le(signature.subarray(32));
    t.ok(s < L, `${v.name}: the RFC's S is reduced`);
    t.ok(s + L < 1n << 256n, `${v.name}: S + L fits 32 bytes`);
    signature.set(toLe(s + L), 32);
    t.same(both(hex(v.public), hex(v.message), signature), { nacl: true, ours: false }, `${v.name}: S + L`);
    // S = L: the smallest non-reduced value.
    signature.set(toLe(L), 32);
    t.notOk(verify(v.public, hex(v.message), toHex(signature)), `${v.name}: S = L`);
  }
});
