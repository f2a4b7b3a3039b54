import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBootedCommit } from '../../../runtime/update/index.js';

const commit = 'a'.repeat(40) + '0123456789abcdef01234567';

t.test('resolves the ostree= boot link to the deployment commit', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'outpost-booted-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'ostree/deploy/debian/deploy', `${commit}.0`), { recursive: true });
  mkdirSync(join(root, 'ostree/boot.1/debian/bootcsum'), { recursive: true });
  symlinkSync(`../../../deploy/debian/deploy/${commit}.0`, join(root, 'ostree/boot.1/debian/bootcsum/0'));
  const cmdlinePath = join(root, 'cmdline');
  writeFileSync(cmdlinePath, 'BOOT_IMAGE=/vmlinuz root=LABEL=root ostree=/ostree/boot.1/debian/bootcsum/0 quiet\n');
  t.equal(await readBootedCommit({ cmdlinePath, sysroot: root }), commit);

  writeFileSync(cmdlinePath, 'root=/dev/sda1 quiet\n');
  t.equal(await readBootedCommit({ cmdlinePath, sysroot: root }), null, 'no ostree= argument: not an OSTree boot');
  writeFileSync(cmdlinePath, 'ostree=/ostree/boot.1/debian/missing/0\n');
  t.equal(await readBootedCommit({ cmdlinePath, sysroot: root }), null, 'a dangling boot link is not a commit');
  t.equal(await readBootedCommit({ cmdlinePath: join(root, 'absent') }), null);
});
