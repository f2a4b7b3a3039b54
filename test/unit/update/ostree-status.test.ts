import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { parseAdminStatus } from '../../../runtime/update/ostree-status.js';
import { thrown } from '../../fixtures/expect-error.js';

const c = (ch: string): string => ch.repeat(64);

// As ostree 2022.7 prints it on a booted gateway after `ostree admin deploy` of a new commit
// (pending) with a retained older deployment (rollback), plus a second stateroot.
const booted = [
  `  debian ${c('a')}.0 (pending)`,
  '    Version: 3',
  `    origin refspec: ${c('a')}`,
  `* debian ${c('b')}.1`,
  '    Version: 2',
  '    Pinned: yes',
  `    origin refspec: remote:debian/x86_64`,
  '    GPG: Signature made Tue 01 Jan 2025',
  `  other ${c('d')}.0`,
  '    origin: none',
  `  debian ${c('c')}.0 (rollback)`,
  '    Unlocked: development',
  `  debian ${c('e')}.0`,
  '',
].join('\n');

t.test('booted system: ostree markers and indices', async (t) => {
  const list = parseAdminStatus(booted, 'debian');
  t.equal(list.length, 5);
  t.match(list[0], { index: 0, commit: c('a'), serial: 0, pending: true, current: false, isDefault: true, version: '3' });
  t.match(list[1], { index: 1, commit: c('b'), serial: 1, booted: true, current: true, pinned: true, origin: 'remote:debian/x86_64' });
  t.match(list[2], { index: 2, osname: 'other', current: false, pending: false, rollback: false, origin: null });
  t.match(list[3], { index: 3, commit: c('c'), rollback: true, version: null });
  t.match(list[4], { index: 4, commit: c('e'), rollback: false, pending: false });
  const hinted = parseAdminStatus(booted, 'debian', { commit: c('a') });
  t.ok(hinted[1]?.booted && !hinted[0]?.booted, 'the hint is ignored when ostree knows the booted deployment');
});

t.test('never-booted sysroot: current is the hinted deployment, else the default', async (t) => {
  const text = [`  os ${c('1')}.0`, '    Version: 2', `  os ${c('2')}.0`, '    Version: 1', `  os ${c('2')}.1`].join('\n');
  const plain = parseAdminStatus(text, 'os');
  t.same(plain.map((d) => [d.current, d.pending, d.rollback, d.booted]), [[true, false, false, false], [false, false, true, false], [false, false, false, false]]);
  const hinted = parseAdminStatus(text, 'os', { commit: c('2'), serial: 1 });
  t.same(hinted.map((d) => [d.current, d.pending, d.rollback, d.booted]), [[false, true, false, false], [false, false, false, false], [true, false, false, true]]);
  const unknownHint = parseAdminStatus(text, 'os', { commit: c('9') });
  t.ok(unknownHint[0]?.current, 'a hint naming no deployment falls back to the default');
  t.same(parseAdminStatus('No deployments.\n', 'os'), []);
  t.same(parseAdminStatus(text, 'missing-os').filter((d) => d.current), [], 'no current deployment of another stateroot');
});

t.test('staged deployments and unrecognised output', async (t) => {
  t.match(parseAdminStatus(`  os ${c('f')}.0 (staged)\n* os ${c('e')}.0\n`, 'os')[0], { staged: true, pending: true });
  const err = thrown(() => parseAdminStatus('error: something else\n', 'os'));
  t.ok(isOutpostError(err, 'OSTREE_FAILED'));
  t.match((err as Error).message, /unrecognised line .*error: something else/);
  t.ok(isOutpostError(thrown(() => parseAdminStatus(`  os ${c('a').slice(1)}.0\n`, 'os')), 'OSTREE_FAILED'), 'short checksum rejected');
});
