import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { silentLogger } from '../../../runtime/logs/index.js';
import { createExec } from '../../../runtime/platform/index.js';
import { listBundle, unpackBundle } from '../../../runtime/update/bundle.js';

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
  t.same(entries.filter((e) => !e.directory).map((e) => [e.path, e.size]).sort(), [['bundle.json', 2], ['metadata/root.json', 2], ['repo/objects/big', 1000]]);
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
  const fake = 'x\n-rw-r--r-- 0/0 0 2020-01-01 00:00 repo/objects/aa';
  craft(file, [{ name: './repo/objects/aa/huge', data: 'y'.repeat(5000), uname: fake }]);
  const entries = await listBundle(exec, file);
  t.same(entries.map((e) => [e.path, e.size]), [['repo/objects/aa/huge', 5000]], 'only the real member, with its real size');
});

