import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../../../runtime/logs/index.js';
import { createExec } from '../../../runtime/platform/index.js';
import { listBundle, unpackBundle, unpackBundleRepo } from '../../../runtime/update/bundle.js';

const exec = createExec(silentLogger);

function temp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-bundle-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a tar with Python's tarfile, which (unlike GNU tar's defaults) writes whatever a hostile bundle holds. */
function craft(file: string, members: { name: string; type?: 'file' | 'symlink'; data?: string; target?: string; uname?: string }[]): void {
  const script = `
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], 'w', format=tarfile.PAX_FORMAT) as tar:
    for m in json.loads(sys.argv[2]):
        info = tarfile.TarInfo(m['name'])
        if 'uname' in m: info.uname = m['uname']
        if m.get('type') == 'symlink':
            info.type = tarfile.SYMTYPE; info.linkname = m['target']; tar.addfile(info)
        else:
            data = m.get('data', '').encode(); info.size = len(data); tar.addfile(info, io.BytesIO(data))
`;
  execFileSync('python3', ['-c', script, file, JSON.stringify(members)]);
}

t.test('a bundle with a link, an absolute or a .. name is refused before anything is unpacked', async (t) => {
  const dir = temp(t);
  for (const [what, members] of [
    ['a symlink', [{ name: './bundle.json', data: '{}' }, { name: './metadata/root.json', type: 'symlink' as const, target: '/etc/shadow' }]],
    ['a .. name', [{ name: './bundle.json', data: '{}' }, { name: '../escape.json', data: 'x' }]],
    ['an absolute name', [{ name: '/tmp/outpost-absolute.json', data: 'x' }]],
  ] as const) {
    const file = join(dir, 'hostile.tar');
    craft(file, [...members]);
    await t.rejects(listBundle(exec, file), { code: 'UPDATE_REFUSED' }, `${what}: refused`);
  }
});

t.test('only the members asked for are unpacked; a file name with a colon is a local file', async (t) => {
  const dir = temp(t);
  const stage = join(dir, 'stage');
  mkdirSync(join(stage, 'metadata'), { recursive: true });
  mkdirSync(join(stage, 'repo', 'objects'), { recursive: true });
  writeFileSync(join(stage, 'bundle.json'), '{}');
  writeFileSync(join(stage, 'metadata', 'root.json'), '{}');
  writeFileSync(join(stage, 'repo', 'objects', 'big'), 'x'.repeat(1000));
  const file = join(dir, 'usb:stick.bundle');
  execFileSync('tar', ['-cf', file, '--force-local', '-C', stage, '.']);
  const entries = await listBundle(exec, file);
  t.same(entries.entries.filter((e) => !e.directory).map((e) => [e.path, e.size]).sort(), [['bundle.json', 2], ['metadata/root.json', 2]]);
  t.equal(entries.bytes, 1004, 'the repository counts in the budget');
  t.equal(entries.repoMember, './repo/');
  const out = join(dir, 'out');
  mkdirSync(out);
  await unpackBundle(exec, file, out, entries, (path) => path === 'bundle.json' || path.startsWith('metadata/'));
  t.same(readdirSync(out).sort(), ['bundle.json', 'metadata']);
  t.notOk(existsSync(join(out, 'repo')), 'the repository waits until the release is verified');
});

t.test('an owner name cannot forge listing lines: sizes and names come from the members themselves', async (t) => {
  const dir = temp(t);
  const file = join(dir, 'forged.tar');
  // A PAX owner name with a newline and a fake line for a small decoy above a large member.
  const fake = 'x\n-rw-r--r-- 0/0 0 2020-01-01 00:00 targets/deltas/aa';
  craft(file, [{ name: './targets/deltas/huge', data: 'y'.repeat(5000), uname: fake }]);
  const listing = await listBundle(exec, file);
  t.same(listing.entries.map((e) => [e.path, e.size]), [['targets/deltas/huge', 5000]], 'only the real member, with its real size');
  t.equal(listing.bytes, 5000);
});


t.test('a full repository of thousands of objects is listed line by line, not buffered under the output cap', async (t) => {
  const dir = temp(t);
  const stage = join(dir, 'stage');
  const objects = join(stage, 'repo', 'objects', 'ab');
  mkdirSync(objects, { recursive: true });
  mkdirSync(join(stage, 'metadata'));
  writeFileSync(join(stage, 'bundle.json'), '{}');
  writeFileSync(join(stage, 'metadata', 'root.json'), '{}');
  // 3000 listing lines of ~110 bytes: far past a 64 KiB cap, as 150k objects are past the real 16 MiB one.
  for (let i = 0; i < 3000; i++) writeFileSync(join(objects, `${i.toString(16).padStart(62, '0')}.file`), 'z');
  const file = join(dir, 'full.bundle');
  execFileSync('tar', ['-cf', file, '-C', stage, '.']);
  const capped = createExec(silentLogger, { maxBufferBytes: 64 * 1024 });
  const listing = await listBundle(capped, file);
  t.equal(listing.bytes, 3000 + 2 + 2, 'every member counted in the budget');
  t.same(listing.entries.filter((e) => !e.directory).map((e) => e.path).sort(), ['bundle.json', 'metadata/root.json'], 'the repository is budgeted, not held member by member');
  const out = join(dir, 'out');
  mkdirSync(out);
  await unpackBundleRepo(capped, file, out, listing);
  t.equal(readdirSync(join(out, 'repo', 'objects', 'ab')).length, 3000);
});

t.test('a bundle with more small members outside repo/ than any release needs is refused', async (t) => {
  const dir = temp(t);
  mkdirSync(join(dir, 'stage', 'metadata'), { recursive: true });
  for (let i = 0; i < 5000; i++) writeFileSync(join(dir, 'stage', 'metadata', `${i}.root.json`), '');
  const file = join(dir, 'many.tar');
  execFileSync('tar', ['-cf', file, '-C', join(dir, 'stage'), '.']);
  await t.rejects(listBundle(exec, file), { code: 'UPDATE_REFUSED', message: /more than 4096 members outside repo\// });
});
