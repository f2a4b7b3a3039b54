/** When a stored grant ends after a restart or a reboot (never later than it would have), and the tunnel's ssh argv. */
import t from 'tap';
import { checkpointRemaining, CHECKPOINT_MS, resumeGrant, tunnelArgs } from '../../../runtime/access/index.js';

const wall = new Date('2031-01-01T00:00:00Z');
const record = { bootId: 'boot-a', deadlineMs: 500_000, remainingMs: 200_000, expiresAt: '2031-01-01T00:10:00Z' };

t.test('in its own boot the monotonic deadline holds, whatever the wall clock says', async (t) => {
  t.same(resumeGrant(record, 'boot-a', 100_000, new Date('1970-01-01T00:00:00Z')), { ended: false, deadlineMs: 500_000, moved: false });
  t.same(resumeGrant(record, 'boot-a', 500_000, wall), { ended: true });
});

t.test('in another boot: the smaller of the stored remainder and the wall-clock remainder, from now', async (t) => {
  t.same(resumeGrant(record, 'boot-b', 1_000, wall), { ended: false, deadlineMs: 201_000, moved: true });
  t.same(resumeGrant({ ...record, expiresAt: '2031-01-01T00:01:00Z' }, 'boot-b', 1_000, wall), { ended: false, deadlineMs: 61_000, moved: true }, 'the wall clock ran on');
  t.same(resumeGrant({ ...record, remainingMs: 0 }, 'boot-b', 1_000, wall), { ended: true }, 'nothing stored: ended');
  t.same(resumeGrant({ ...record, expiresAt: '2030-12-31T23:59:59Z' }, 'boot-b', 1_000, wall), { ended: true }, 'past sshd\'s expiry');
  t.same(resumeGrant({ ...record, bootId: 'unknown' }, 'unknown', 1_000, wall), { ended: false, deadlineMs: 201_000, moved: true }, 'an unreadable boot id is another boot');
});

t.test('the stored remainder is written one checkpoint ahead, so a power cut before the next one cannot extend the grant', async (t) => {
  t.equal(checkpointRemaining(500_000, 100_000), 400_000 - CHECKPOINT_MS);
  t.equal(checkpointRemaining(500_000, 480_000), 0, 'less than an interval left: a reboot ends it');
  // Any time between this checkpoint and the next, the stored value is at most what is left.
  for (const elapsed of [0, 1, CHECKPOINT_MS / 2, CHECKPOINT_MS]) t.ok(checkpointRemaining(500_000, 100_000) <= 500_000 - (100_000 + elapsed));
});

t.test('the tunnel: no config files, pinned host key, forward to the local sshd, the host after --', async (t) => {
  const args = tunnelArgs({ target: { host: 'bastion.example.com', port: 2222, user: 'gw', hostKey: 'ssh-ed25519 AAAA', remotePort: 40022 }, keyFile: '/var/lib/outpost/access/tunnel-key', sshdPort: 22 }, '/kh');
  t.same(args.slice(0, 4), ['-N', '-T', '-F', '/dev/null']);
  for (const option of ['StrictHostKeyChecking=yes', 'UserKnownHostsFile=/kh', 'GlobalKnownHostsFile=/dev/null', 'BatchMode=yes', 'ExitOnForwardFailure=yes', 'IdentitiesOnly=yes']) t.ok(args.includes(option), option);
  t.same(args.slice(args.indexOf('-R'), args.indexOf('-R') + 2), ['-R', '40022:127.0.0.1:22']);
  t.same(args.slice(-6), ['-p', '2222', '-l', 'gw', '--', 'bastion.example.com']);
});
