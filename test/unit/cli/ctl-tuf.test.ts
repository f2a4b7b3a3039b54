import t, { type Test } from 'tap';
import { chmodSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runProgram, type Command } from '../../../runtime/cli/command.js';
import { keyCommands } from '../../../runtime/cli/ctl-keys.js';
import { repoCommands } from '../../../runtime/cli/ctl-repo.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { Store } from '../../../runtime/store/index.js';
import { TufClient } from '../../../runtime/update/tuf/index.js';
import { DirFetcher, tempDir } from '../update/tuf/fixture.js';

/** Runs outpostctl in-process with the key and repo commands. */
async function ctl(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const commands: Command[] = [...keyCommands, ...repoCommands];
  const code = await runProgram({ name: 'outpostctl', summary: 'test', commands }, argv, { env: {}, out: (s) => (out += `${s}\n`), err: (s) => (err += `${s}\n`) });
  return { code, out, err };
}

async function ok(t: Test, ...argv: string[]): Promise<string> {
  const r = await ctl(...argv);
  t.equal(r.code, 0, `outpostctl ${argv.slice(0, 2).join(' ')}`, { stderr: r.err });
  return r.out;
}

const keyIdOf = (file: string): string => (JSON.parse(readFileSync(file, 'utf8')) as { keyid: string }).keyid;

t.test('operator flow: keys, init, rotate root, revoke a targets key, refresh; a device follows', async (t) => {
  const dir = tempDir(t, 'outpost-ctl-');
  const keys = join(dir, 'keys');
  const repo = join(dir, 'repo');
  for (const role of ['root', 'targets', 'snapshot', 'timestamp', 'commands']) t.match(await ok(t, 'keys', 'generate', '--role', role, '--out', keys), new RegExp(`^${role} key [0-9a-f]{64}`));
  await ok(t, 'keys', 'generate', '--role', 'root', '--name', 'root-2', '--out', keys);
  t.equal(statSync(join(keys, 'root.key')).mode & 0o777, 0o600);
  t.equal(statSync(keys).mode & 0o777, 0o700);

  const again = await ctl('keys', 'generate', '--role', 'root', '--out', keys);
  t.equal(again.code, 65, 'an existing key is never overwritten');
  t.match(again.err, /root\.key: it already exists/);
  t.equal((await ctl('keys', 'generate', '--role', 'admin', '--out', keys)).code, 64);

  const k = (name: string) => join(keys, `${name}.key`);
  await ok(t, 'repo', 'init', repo, '--root-key', k('root'), '--root-key', k('root-2'), '--threshold', '2', '--targets-key', k('targets'), '--snapshot-key', k('snapshot'), '--timestamp-key', k('timestamp'));
  t.same(readdirSync(repo).sort(), ['1.root.json', 'root.json', 'snapshot.json', 'targets.json', 'timestamp.json']);
  t.equal((await ctl('repo', 'init', repo, '--root-key', k('root'), '--targets-key', k('targets'), '--snapshot-key', k('snapshot'), '--timestamp-key', k('timestamp'))).code, 64, 'init refuses an existing repository');

  // A device trusting 1.root.json.
  const store = await Store.open({ location: join(dir, 'store'), version: 1 });
  t.teardown(() => store.close());
  const client = new TufClient({ store, fetcher: new DirFetcher(repo), initialRoot: new Uint8Array(readFileSync(join(repo, '1.root.json'))), now: () => new Date(), log: silentLogger });
  t.same((await client.refresh()).versions, { root: 1, timestamp: 1, snapshot: 1, targets: 1 });

  // One old root key is below the threshold of 2.
  await ok(t, 'keys', 'generate', '--role', 'root', '--name', 'root-new', '--out', keys);
  const below = await ctl('repo', 'rotate-root', repo, '--old-key', k('root'), '--new-key', k('root-new'), '--threshold', '1');
  t.equal(below.code, 65);
  t.match(below.err, /signed by 1 of the 2 root keys root v1 requires/);
  await ok(t, 'repo', 'rotate-root', repo, '--old-key', k('root'), '--old-key', k('root-2'), '--new-key', k('root-new'), '--threshold', '1');

  // Revoke the targets key; the other online keys must be given and must be the right ones.
  await ok(t, 'keys', 'generate', '--role', 'targets', '--name', 'targets-new', '--out', keys);
  const oldTargets = keyIdOf(join(keys, 'targets.pub'));
  const wrong = await ctl('repo', 'revoke-key', repo, '--role', 'targets', '--key-id', oldTargets, '--new-key', k('targets-new'), '--root-key', k('root-new'), '--snapshot-key', k('timestamp'), '--timestamp-key', k('timestamp'));
  t.equal(wrong.code, 64);
  t.match(wrong.err, /timestamp\.key \(key [0-9a-f]{64}\) is not a snapshot key of root v2/);
  t.equal(JSON.parse(readFileSync(join(repo, 'root.json'), 'utf8')).signed.version, 2, 'nothing was written');
  t.match(await ok(t, 'repo', 'revoke-key', repo, '--role', 'targets', '--key-id', oldTargets, '--new-key', k('targets-new'), '--root-key', k('root-new'), '--snapshot-key', k('snapshot'), '--timestamp-key', k('timestamp')), /revoked targets key .* in root v3/);
  await ok(t, 'repo', 'refresh', repo, '--timestamp-key', k('timestamp'), '--snapshot-key', k('snapshot'));

  const after = await client.refresh();
  t.same(after.versions, { root: 3, timestamp: 3, snapshot: 3, targets: 2 });

  // Key file permissions are enforced at the CLI too.
  chmodSync(k('timestamp'), 0o644);
  const loose = await ctl('repo', 'refresh', repo, '--timestamp-key', k('timestamp'));
  t.equal(loose.code, 65);
  t.match(loose.err, /timestamp\.key has mode 0644/);
});

t.test('repeatable options: missing ones are usage errors, help marks them', async (t) => {
  const r = await ctl('repo', 'init', '/nonexistent', '--targets-key', 'x', '--snapshot-key', 'y', '--timestamp-key', 'z');
  t.equal(r.code, 64);
  t.match(r.err, /--root-key is required/);
  const help = await ctl('repo', 'rotate-root', '--help');
  t.match(help.out, /--old-key FILE\s+private key of the current root, as many as its threshold \(repeatable\)/);
  t.equal((await ctl('repo', 'init', '/x', '--root-key', 'a', '--threshold', '0')).code, 64);
});
