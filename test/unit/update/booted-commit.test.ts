import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBootedCommit } from '../../../runtime/update/index.js';

const commit = 'a'.repeat(40) + '0123456789abcdef01234567';
const next = 'b'.repeat(64);

t.test('the booted commit is the deployment directory that is the running root', async (t) => {
  const sysroot = mkdtempSync(join(tmpdir(), 'outpost-booted-'));
  t.teardown(() => rmSync(sysroot, { recursive: true, force: true }));
  const deploy = join(sysroot, 'ostree/deploy/debian/deploy');
  for (const c of [commit, next]) mkdirSync(join(deploy, `${c}.0`), { recursive: true });
  writeFileSync(join(deploy, `${commit}.0.origin`), '');
  mkdirSync(join(sysroot, 'ostree/boot.1/debian/bootcsum'), { recursive: true });
  const link = join(sysroot, 'ostree/boot.1/debian/bootcsum/0');
  symlinkSync(`../../../deploy/debian/deploy/${commit}.0`, link);
  const cmdlinePath = join(sysroot, 'cmdline');
  writeFileSync(cmdlinePath, 'BOOT_IMAGE=/vmlinuz root=LABEL=root ostree=/ostree/boot.1/debian/bootcsum/0 quiet\n');
  const root = join(deploy, `${commit}.0`);
  t.equal(await readBootedCommit({ cmdlinePath, sysroot, root }), commit);

  // Two boot-config swaps later (an undeploy, then a deploy) the same boot link names the new
  // deployment; the running root has not changed.
  unlinkSync(link);
  symlinkSync(`../../../deploy/debian/deploy/${next}.0`, link);
  t.equal(await readBootedCommit({ cmdlinePath, sysroot, root }), commit, 'not the deployment the boot link names now');

  t.equal(await readBootedCommit({ cmdlinePath, sysroot, root: sysroot }), null, 'a root that is no deployment');
  writeFileSync(cmdlinePath, 'root=/dev/sda1 quiet\n');
  t.equal(await readBootedCommit({ cmdlinePath, sysroot, root }), null, 'no ostree= argument: not an OSTree boot');
  t.equal(await readBootedCommit({ cmdlinePath: join(sysroot, 'absent') }), null);
});
