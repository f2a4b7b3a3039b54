/**
 * The local API's access rules with real users: root and the admin group may change things, the
 * read group may only query, anyone else is refused by the kernel-reported credentials.
 */
import t from 'tap';
import { chmodSync } from 'node:fs';
import { execa } from 'execa';
import { deviceWorld } from '../../../scripts/world/device.js';
import { until } from '../../../scripts/world/until.js';

const admins = 'outpost-test-admin';
const readers = 'outpost-test-read';
const users = { admin: 'outpost-t-admin', reader: 'outpost-t-reader', other: 'outpost-t-other' } as const;
const skip = process.getuid?.() !== 0 && 'creating users needs root';

/** Creates the groups and users once per machine (idempotent). */
async function ensureUsers(): Promise<void> {
  for (const group of [admins, readers]) {
    if ((await execa('getent', ['group', group], { reject: false })).exitCode !== 0) await execa('groupadd', ['--system', group]);
  }
  const memberOf = { [users.admin]: admins, [users.reader]: readers, [users.other]: '' };
  for (const [user, group] of Object.entries(memberOf)) {
    if ((await execa('id', [user], { reject: false })).exitCode !== 0) await execa('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', ...(group ? ['--groups', group] : []), user]);
  }
}

t.test('api access by peer credentials: root and admin change, read group queries, others are refused', { skip }, async (t) => {
  await ensureUsers();
  const world = deviceWorld();
  t.teardown(world.cleanup);
  chmodSync(world.dir, 0o755); // the temp dir is 0700: let the test users reach the socket below it
  world.writeConfig({ api: { adminGroup: admins, readGroup: readers } });
  const daemon = world.run();
  t.teardown(() => daemon.kill('SIGKILL'));
  await until('the API', async () => ((await world.cli(['status'])).exitCode === 0 ? true : undefined));
  const as = async (user: string, args: string[]) => {
    const r = await execa('setpriv', [`--reuid=${user}`, `--regid=${user}`, '--init-groups', 'node', 'dist/runtime/cli/outpost.js', ...args, '--socket', world.socketPath], { reject: false, env: { OUTPOST_CONFIG: world.configPath } });
    return { code: r.exitCode, out: r.stdout, err: r.stderr };
  };

  t.equal((await as(users.reader, ['status'])).code, 0, 'the read group queries');
  const readerApply = await as(users.reader, ['update', 'check']);
  t.equal(readerApply.code, 77, `the read group cannot change anything: ${readerApply.err}`);
  t.match(readerApply.err, /uid \d+ \(pid \d+\) may not change outpost: that takes root or group outpost-test-admin/);
  const adminCheck = await as(users.admin, ['update', 'check']);
  t.not(adminCheck.code, 77, 'the admin group gets past the access rule (no updates configured here)');
  t.match(adminCheck.err, /updates are not configured/);
  t.equal((await as(users.admin, ['status'])).code, 0, 'and queries too');
  const other = await as(users.other, ['status', '--json']);
  t.equal(other.code, 77, 'anyone else is refused');
  t.match(JSON.parse(other.out), { error: { code: 'API_FORBIDDEN', message: /may not query outpost: that takes root or group outpost-test-admin or group outpost-test-read/ } });
  const root = await world.cli(['update', 'check']);
  t.match(root.stderr, /updates are not configured/, 'root gets past the access rule too');
  daemon.kill('SIGTERM');
  t.match((await daemon).stdout, /"msg":"api request refused"/, 'refusals are logged');
});

t.test('without groups the socket file mode decides, as before: 0666 lets anyone in', { skip }, async (t) => {
  await ensureUsers();
  const world = deviceWorld();
  t.teardown(world.cleanup);
  chmodSync(world.dir, 0o755);
  world.writeConfig({ api: { socketMode: '0666' } });
  const daemon = world.run();
  t.teardown(() => daemon.kill('SIGKILL'));
  await until('the API', async () => ((await world.cli(['status'])).exitCode === 0 ? true : undefined));
  const r = await execa('setpriv', [`--reuid=${users.other}`, `--regid=${users.other}`, '--init-groups', 'node', 'dist/runtime/cli/outpost.js', 'status', '--socket', world.socketPath], { reject: false });
  t.equal(r.exitCode, 0, r.stderr);
  daemon.kill('SIGTERM');
  await daemon;
});
