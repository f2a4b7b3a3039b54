import t, { type Test } from 'tap';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isOutpostError } from '../../../runtime/errors.js';
import { generateKey, readPrivateKeyFile, readPublicKeyFile, toHex, writePrivateKeyFile, writePublicKeyFile } from '../../../runtime/trust/index.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Checks that `promise` rejects with a KEY_FILE error naming `path` and matching `re`. */
async function rejectsKeyFile(t: Test, promise: Promise<unknown>, path: string, re: RegExp, name?: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isOutpostError(err, 'KEY_FILE') && err.message.includes(path) && re.test(err.message), name ?? 'KEY_FILE error', { err });
}

t.test('a private key file is 0600, round-trips, and holds keytype/scheme/keyval hex', async (t) => {
  const dir = tempDir(t);
  const key = generateKey();
  const path = join(dir, 'targets.key');
  await writePrivateKeyFile(path, key);
  t.equal(statSync(path).mode & 0o777, 0o600);
  const json = JSON.parse(readFileSync(path, 'utf8')) as { keytype: string; scheme: string; keyid: string; keyval: { public: string; private: string } };
  t.equal(json.keytype, 'ed25519');
  t.equal(json.scheme, 'ed25519');
  t.equal(json.keyid, key.keyid);
  t.equal(json.keyval.public, toHex(key.publicKey));
  t.match(json.keyval.private, /^[0-9a-f]{64}$/);
  const back = await readPrivateKeyFile(path);
  t.equal(back.keyid, key.keyid);
  t.same(Array.from(back.secretKey), Array.from(key.secretKey));
  t.same(readdirSync(dir), ['targets.key'], 'no temporary files left behind');
});

t.test('a public key file is 0644 and round-trips; a private file can be read as public', async (t) => {
  const dir = tempDir(t);
  const key = generateKey();
  await writePublicKeyFile(join(dir, 'k.pub'), key);
  await writePrivateKeyFile(join(dir, 'k.key'), key);
  t.equal(statSync(join(dir, 'k.pub')).mode & 0o777, 0o644);
  t.notOk(readFileSync(join(dir, 'k.pub'), 'utf8').includes('private'));
  t.equal((await readPublicKeyFile(join(dir, 'k.pub'))).keyid, key.keyid);
  t.equal((await readPublicKeyFile(join(dir, 'k.key'))).keyid, key.keyid);
});

t.test('existing key files are not overwritten unless asked', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'root.key');
  const first = generateKey();
  await writePrivateKeyFile(path, first);
  await rejectsKeyFile(t, writePrivateKeyFile(path, generateKey()), path, /already exists/);
  t.equal((await readPrivateKeyFile(path)).keyid, first.keyid, 'the first key is intact');
  const second = generateKey();
  await writePrivateKeyFile(path, second, { overwrite: true });
  t.equal((await readPrivateKeyFile(path)).keyid, second.keyid);
  t.equal(readdirSync(dir).length, 1);
});

t.test('a private key file readable by group or others is refused, naming the file', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'root.key');
  await writePrivateKeyFile(path, generateKey());
  for (const mode of [0o640, 0o604, 0o644, 0o660]) {
    chmodSync(path, mode);
    await rejectsKeyFile(t, readPrivateKeyFile(path), path, new RegExp(`mode 0${mode.toString(8)}.*chmod 600`), mode.toString(8));
  }
  chmodSync(path, 0o400);
  t.ok(await readPrivateKeyFile(path), '0400 is fine');
});

t.test('bad key files are KEY_FILE errors naming the file', async (t) => {
  const dir = tempDir(t);
  const write = (name: string, body: string) => {
    const path = join(dir, name);
    writeFileSync(path, body, { mode: 0o600 });
    return path;
  };
  const key = generateKey();
  const other = generateKey();
  const good = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: toHex(key.publicKey), private: toHex(key.secretKey.slice(0, 32)) } };
  const cases: [string, string, RegExp][] = [
    ['missing.key', '', /cannot read/],
    ['notjson.key', '{', /not JSON/],
    ['rsa.key', JSON.stringify({ ...good, keytype: 'rsa' }), /keytype/],
    ['short.key', JSON.stringify({ ...good, keyval: { ...good.keyval, private: 'abcd' } }), /32-byte/],
    ['mismatch.key', JSON.stringify({ ...good, keyval: { ...good.keyval, public: toHex(other.publicKey) } }), /does not belong/],
    ['wrongid.key', JSON.stringify({ ...good, keyid: other.keyid }), /keyid/],
    ['huge.key', ' '.repeat(70 * 1024), /larger than/],
  ];
  for (const [name, body, re] of cases) {
    const path = name === 'missing.key' ? join(dir, name) : write(name, body);
    await rejectsKeyFile(t, readPrivateKeyFile(path), path, re, name);
  }
  t.ok(await readPrivateKeyFile(write('good.key', JSON.stringify(good))), 'a file without keyid is fine');
});
