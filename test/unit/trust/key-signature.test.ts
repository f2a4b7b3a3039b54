import { constants, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import t from 'tap';
import { generateKey, publicIdentity, sign as signEd25519, verifyKeySignature, type TufKey } from '../../../runtime/trust/index.js';
import { countValidSignatures } from '../../../runtime/update/tuf/index.js';
import type { RootSigned } from '../../../runtime/update/tuf/schema.js';

const message = new TextEncoder().encode('{"_type":"timestamp","version":2}');

function ecdsaKey() {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const key: TufKey = { keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: publicKey.export({ type: 'spki', format: 'pem' }).toString() } };
  return { key, sign: (bytes: Uint8Array) => sign('sha256', bytes, { key: privateKey, dsaEncoding: 'der' }).toString('hex') };
}

function rsaPssKey() {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const key: TufKey = { keytype: 'rsa', scheme: 'rsassa-pss-sha256', keyval: { public: publicKey.export({ type: 'spki', format: 'pem' }).toString() } };
  // securesystemslib signs with the digest length as salt; verification must not assume it.
  return { key, sign: (bytes: Uint8Array) => sign('sha256', bytes, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }).toString('hex') };
}

t.test('ECDSA P-256 (DER) and RSA-PSS signatures verify; a wrong message, key or scheme does not', async (t) => {
  for (const [name, k] of [['ecdsa-sha2-nistp256', ecdsaKey()], ['rsassa-pss-sha256', rsaPssKey()]] as const) {
    const sig = k.sign(message);
    t.ok(verifyKeySignature(k.key, message, sig), `${name}: valid`);
    t.notOk(verifyKeySignature(k.key, new TextEncoder().encode('{"_type":"timestamp","version":3}'), sig), `${name}: another message`);
    t.notOk(verifyKeySignature(k.key, message, sig.slice(0, -2) + (sig.endsWith('00') ? '01' : '00')), `${name}: a flipped byte`);
    t.notOk(verifyKeySignature({ ...k.key, scheme: 'rsa-pkcs1v15-sha256' }, message, sig), `${name}: a scheme this device does not verify`);
    t.notOk(verifyKeySignature(k.key, message, 'not hex'), `${name}: garbage`);
  }
  const other = ecdsaKey();
  t.notOk(verifyKeySignature(other.key, message, ecdsaKey().sign(message)), 'another key');
  const ed = generateKey();
  t.ok(verifyKeySignature(ed.key, message, signEd25519(ed, message).sig), 'ed25519 still verifies');
});

t.test('a threshold counts ECDSA and RSA-PSS signers, each public key once', async (t) => {
  const ec = ecdsaKey();
  const rsa = rsaPssKey();
  const root = {
    keys: { ec1: ec.key, ec2: ec.key, rsa1: rsa.key, odd: { keytype: 'sm2', scheme: 'sm2', keyval: { public: 'x' } } },
    roles: { timestamp: { keyids: ['ec1', 'ec2', 'rsa1', 'odd'], threshold: 2 } },
  } as unknown as RootSigned;
  const signatures = [
    { keyid: 'ec1', sig: ec.sign(message) },
    { keyid: 'ec2', sig: ec.sign(message) },
    { keyid: 'rsa1', sig: rsa.sign(message) },
    { keyid: 'odd', sig: 'ab' },
  ];
  t.equal(countValidSignatures(root, 'timestamp', { signatures, signedBytes: message }), 2, 'one ECDSA key under two ids counts once, plus the RSA key');
  // The same RSA key in another PEM form (PKCS#1) under a third id: still one key.
  const pkcs1 = createPublicKey(rsa.key.keyval.public ?? '').export({ type: 'pkcs1', format: 'pem' }).toString();
  const again = { ...root, keys: { ...root.keys, rsa2: { ...rsa.key, keyval: { public: pkcs1 } } }, roles: { ...root.roles, timestamp: { keyids: ['rsa1', 'rsa2'], threshold: 2 } } } as unknown as RootSigned;
  t.equal(countValidSignatures(again, 'timestamp', { signatures: [{ keyid: 'rsa1', sig: rsa.sign(message) }, { keyid: 'rsa2', sig: rsa.sign(message) }], signedBytes: message }), 1, 'one RSA key in two PEM forms counts once');
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const wrongCurve: TufKey = { keytype: 'ecdsa', scheme: 'ecdsa-sha2-nistp256', keyval: { public: p384.publicKey.export({ type: 'spki', format: 'pem' }).toString() } };
  t.notOk(verifyKeySignature(wrongCurve, message, sign('sha256', message, { key: p384.privateKey, dsaEncoding: 'der' }).toString('hex')), 'a P-384 key under the P-256 scheme never verifies');
  t.equal(publicIdentity({ keytype: 'sm2', scheme: 'sm2', keyval: { public: 'x' } }), null);
});
