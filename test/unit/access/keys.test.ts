/**
 * The authorized-keys lines of just-in-time access: strict key parsing (keys made by the real
 * ssh-keygen, fingerprints compared with its own), `from=` patterns, the rendered lines and files
 * (read back by ssh-keygen), and the local adapter's file writing and refusals.
 */
import t from 'tap';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { authorizedKeyLine, checkFromPatterns, expiryTimeOption, localAccessHost, parseAuthorizedKeyLine, parsePublicKey, renderAuthorizedKeys } from '../../../runtime/access/index.js';
import { createLogger } from '../../../runtime/logs/index.js';

const dir = mkdtempSync(join(tmpdir(), 'outpost-access-keys-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const log = createLogger({ level: 'error', sinks: [] });

async function keygen(name: string, args: string[]): Promise<{ pub: string; fingerprint: string }> {
  const file = join(dir, name);
  await execa('ssh-keygen', ['-q', ...args, '-N', '', '-C', 'someone@laptop', '-f', file]);
  const pub = readFileSync(`${file}.pub`, 'utf8');
  const fingerprint = (await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${file}.pub`])).stdout.split(' ')[1]!;
  return { pub, fingerprint };
}

t.test('ed25519, ecdsa and rsa keys parse, their comment dropped, with the fingerprint ssh-keygen prints', async (t) => {
  for (const [name, args] of [['ed', ['-t', 'ed25519']], ['ec256', ['-t', 'ecdsa', '-b', '256']], ['ec521', ['-t', 'ecdsa', '-b', '521']], ['rsa', ['-t', 'rsa', '-b', '2048']]] as const) {
    const { pub, fingerprint } = await keygen(name, [...args]);
    const key = parsePublicKey(pub);
    t.equal(key.fingerprint, fingerprint, `${name}: fingerprint`);
    t.equal(key.text, pub.split(' ').slice(0, 2).join(' '), `${name}: type and base64 only`);
  }
});

t.test('anything but one plain key is refused', async (t) => {
  const { pub } = await keygen('ed2', ['-t', 'ed25519']);
  const [type, base64] = pub.trim().split(' ') as [string, string];
  const small = await keygen('rsa1024', ['-t', 'rsa', '-b', '1024']);
  const ecdsa = (await keygen('ec2', ['-t', 'ecdsa', '-b', '256'])).pub.split(' ')[1]!;
  const blob = Buffer.from(base64, 'base64');
  const cases: [string, string, RegExp][] = [
    ['options before the key', `command="/bin/sh" ${pub}`, /key type/],
    ['restrict before the key', `restrict ${pub}`, /key type/],
    ['a second line', `${type} ${base64}\n${type} ${base64}`, /one line/],
    ['a carriage return', `${type} ${base64}\r`, /one line/],
    ['a tab', `${type}\t${base64}`, /one line/],
    ['a DSA key', `ssh-dss ${base64}`, /key type/],
    ['a FIDO key', `sk-ssh-ed25519@openssh.com ${base64}`, /key type/],
    ['not base64', `${type} ${base64.slice(0, -4)}!!!!`, /base64/],
    ['a blob of another type', `ssh-ed25519 ${ecdsa}`, /does not name/],
    ['a cut blob', `${type} ${blob.subarray(0, blob.length - 3).toString('base64')}`, /cut short|32 bytes/],
    ['trailing bytes', `${type} ${Buffer.concat([blob, Buffer.from([0, 0, 0, 0])]).toString('base64')}`, /trailing/],
    ['a short RSA key', small.pub, /at least 2048/],
    ['too long', `${type} ${base64} ${'x'.repeat(9000)}`, /longer/],
    ['empty', '', /one line/],
  ];
  for (const [what, input, message] of cases) t.throws(() => parsePublicKey(input), message, what);
});

t.test('from= patterns: hosts, addresses, CIDR, wildcards and negation; nothing that leaves the quotes', async (t) => {
  t.equal(checkFromPatterns('10.0.0.0/8,!10.0.0.1,*.example.com,2001:db8::/32,gw-?.lan'), '10.0.0.0/8,!10.0.0.1,*.example.com,2001:db8::/32,gw-?.lan');
  for (const bad of ['10.0.0.1" command="sh', '10.0.0.1 ,10.0.0.2', '', '10.0.0.1,', 'a,'.repeat(40) + 'a', '10.0.0.1\n']) t.throws(() => checkFromPatterns(bad), JSON.stringify(bad));
});

t.test('the line: UTC expiry in whole seconds rounded down, from=, restrict with pty, the grant id as comment', async (t) => {
  const { pub } = await keygen('ed3', ['-t', 'ed25519']);
  const key = pub.split(' ').slice(0, 2).join(' ');
  t.equal(expiryTimeOption(new Date('2031-02-03T04:05:06.999Z')), '20310203040506Z');
  t.equal(authorizedKeyLine({ id: 'cmd-1', principal: 'ops', publicKey: pub, expiresAt: '2031-02-03T04:05:06.999Z' }), `expiry-time="20310203040506Z",restrict,pty ${key} outpost-grant:cmd-1`);
  t.equal(authorizedKeyLine({ id: 'cmd-2', principal: 'ops', publicKey: key, from: '192.0.2.0/24', expiresAt: '2031-02-03T04:05:06Z' }), `expiry-time="20310203040506Z",from="192.0.2.0/24",restrict,pty ${key} outpost-grant:cmd-2`);
  t.throws(() => authorizedKeyLine({ id: 'bad id', principal: 'ops', publicKey: key, expiresAt: '2031-02-03T04:05:06Z' }), /grant id/);
  t.throws(() => authorizedKeyLine({ id: 'c', principal: 'ops', publicKey: key, expiresAt: 'soon' }), /not a time/);
});

t.test('a line reads back as the entry it was written for, to the second; any other line does not', async (t) => {
  const { pub } = await keygen('ed-parse', ['-t', 'ed25519']);
  const key = parsePublicKey(pub).text;
  for (const entry of [
    { id: 'cmd-1', principal: 'ops', publicKey: key, expiresAt: '2031-02-03T04:05:06.000Z' },
    { id: 'cmd-2', principal: 'ops', publicKey: key, from: '192.0.2.0/24,!192.0.2.1', expiresAt: '2031-02-03T04:05:06.000Z' },
  ]) {
    t.same(parseAuthorizedKeyLine(authorizedKeyLine(entry), 'ops'), entry);
  }
  t.same(parseAuthorizedKeyLine(authorizedKeyLine({ id: 'cmd-3', principal: 'ops', publicKey: key, expiresAt: '2031-02-03T04:05:06.999Z' }), 'ops')?.expiresAt, '2031-02-03T04:05:06.000Z', 'sshd\'s expiry, rounded down');
  t.equal(parseAuthorizedKeyLine(`${key} hand-added`, 'ops'), undefined);
  t.equal(parseAuthorizedKeyLine('# Written by outpost', 'ops'), undefined);
});

t.test('the file: latest expiry first, one key per line, read back by ssh-keygen', async (t) => {
  const a = await keygen('ed4', ['-t', 'ed25519']);
  const b = await keygen('rsa4', ['-t', 'rsa', '-b', '2048']);
  const text = renderAuthorizedKeys([
    { id: 'early', principal: 'ops', publicKey: a.pub, expiresAt: '2031-01-01T00:00:00Z' },
    { id: 'late', principal: 'ops', publicKey: b.pub, expiresAt: '2031-06-01T00:00:00Z' },
  ]);
  const lines = text.split('\n').filter((l) => l && !l.startsWith('#'));
  t.match(lines, [/outpost-grant:late$/, /outpost-grant:early$/]);
  const file = join(dir, 'authorized');
  writeFileSync(file, text);
  const listed = (await execa('ssh-keygen', ['-l', '-f', file])).stdout;
  t.match(listed, b.fingerprint);
  t.match(listed, a.fingerprint);
});

t.test('the local adapter writes one 0644 file per principal, removes the others, and refuses what the config does not allow', async (t) => {
  const keysDir = join(dir, 'keys');
  mkdirSync(keysDir);
  writeFileSync(join(keysDir, 'gone'), 'stale');
  writeFileSync(join(keysDir, 'README.txt'), 'not outpost');
  const now = new Date('2031-01-01T00:00:00Z');
  const host = localAccessHost({ keysDir, principals: ['ops', 'field', 'gone'], maxDurationSec: 3600, log, now: () => now });
  const { pub } = await keygen('ed5', ['-t', 'ed25519']);
  await host.set([{ id: 'g1', principal: 'ops', publicKey: pub, expiresAt: '2031-01-01T00:30:00Z' }]);
  t.same(readdirSync(keysDir).sort(), ['README.txt', 'ops'], 'the stale principal file went; other names are not outpost\'s');
  t.equal(statSync(join(keysDir, 'ops')).mode & 0o777, 0o644);
  t.match(readFileSync(join(keysDir, 'ops'), 'utf8'), /outpost-grant:g1\n$/);
  const g1 = { id: 'g1', principal: 'ops', publicKey: pub, expiresAt: '2031-01-01T00:30:00Z' };
  const outcome = await host.set([
    g1,
    { id: 'g2', principal: 'root', publicKey: pub, expiresAt: '2031-01-01T00:30:00Z' },
    { id: 'g3', principal: 'ops', publicKey: pub, expiresAt: '2031-01-01T03:00:00Z' },
    { id: 'g4', principal: 'ops', publicKey: `command="sh" ${pub}`, expiresAt: '2031-01-01T00:30:00Z' },
    { id: 'g5', principal: 'field', publicKey: pub, expiresAt: '2031-01-01T00:20:00Z' },
  ]);
  t.match(
    outcome.refused,
    [
      { id: 'g2', reason: /not in commands\.access\.principals/ },
      { id: 'g3', reason: /maxDurationSec/ },
      { id: 'g4', reason: /malformed/ },
    ],
    'each entry off the contract is refused with why: a principal off the list, longer than allowed, a smuggled option',
  );
  t.equal(outcome.refused.length, 3);
  t.match(readFileSync(join(keysDir, 'ops'), 'utf8'), /restrict,pty \S+ \S+ outpost-grant:g1\n$/, 'the refused entries do not hold up the others');
  t.match(readFileSync(join(keysDir, 'field'), 'utf8'), /outpost-grant:g5\n$/);
  await host.set([]);
  t.same(readdirSync(keysDir), ['README.txt'], 'no grants, no files');
  await t.rejects(host.endSessions('root'), { code: 'INSTALLER_REFUSED' });
  await t.rejects(host.endSessions('nobody'), { code: 'INSTALLER_REFUSED' });
});

t.test('the keys directory sshd reads as the principal is 0755 whatever the umask (the installer runs with UMask=0077)', async (t) => {
  const keysDir = join(dir, 'umask-keys');
  const previous = process.umask(0o077);
  t.teardown(() => void process.umask(previous));
  const host = localAccessHost({ keysDir, principals: ['ops'], maxDurationSec: 3600, log, now: () => new Date('2031-01-01T00:00:00Z') });
  const { pub } = await keygen('ed-umask', ['-t', 'ed25519']);
  await host.set([{ id: 'g1', principal: 'ops', publicKey: pub, expiresAt: '2031-01-01T00:30:00Z' }]);
  t.equal(statSync(keysDir).mode & 0o777, 0o755, 'sshd opens the file with the principal\'s uid');
  t.equal(statSync(join(keysDir, 'ops')).mode & 0o777, 0o644);
});

t.test('sessions: sshd\'s per-session process of an allowed principal, running as that user', async (t) => {
  const proc = join(dir, 'proc');
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, 'root:x:0:0::/root:/bin/sh\nops:x:1500:1500::/:/bin/sh\n');
  const fake = (pid: number, uid: number, cmdline: string, state = 'S') => {
    mkdirSync(join(proc, String(pid)), { recursive: true });
    writeFileSync(join(proc, String(pid), 'status'), `Name:\tsshd\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
    writeFileSync(join(proc, String(pid), 'stat'), `${pid} (sshd: x) ${state} 1 ${Array.from({ length: 17 }, () => '0').join(' ')} 4242 0 0\n`);
    writeFileSync(join(proc, String(pid), 'cmdline'), `${cmdline}\0`);
  };
  fake(100, 0, 'sshd: ops [priv]');
  fake(101, 1500, 'sshd: ops@pts/3');
  fake(102, 1500, 'sshd: ops@notty');
  fake(103, 1500, '-sh');
  fake(104, 1501, 'sshd: ops@pts/9', 'S');
  fake(105, 1500, 'sshd-session: ops@pts/4');
  fake(106, 1500, 'sshd: ops@pts/5', 'Z');
  const host = localAccessHost({ keysDir: join(dir, 'k2'), principals: ['ops'], maxDurationSec: 60, log, procDir: proc, passwdFile: passwd });
  t.same(
    (await host.sessions()).sort((a, b) => a.pid - b.pid),
    [
      { principal: 'ops', id: '101-4242', pid: 101, tty: 'pts/3' },
      { principal: 'ops', id: '102-4242', pid: 102, tty: null },
      { principal: 'ops', id: '105-4242', pid: 105, tty: 'pts/4' },
    ],
  );
});
