import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isOutpostError, OutpostError } from '../../../runtime/errors.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import type { Exec } from '../../../runtime/platform/index.js';
import { flushBoot, mountPoints } from '../../../runtime/update/flush-boot.js';

/** A stand-in Exec that records calls and fails the ones `fail` says to. */
function recorder(fail: (cmd: string, args: string[], call: number) => boolean = () => false): Exec & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    async run(cmd, args) {
      calls.push([cmd, ...args].join(' '));
      if (fail(cmd, args, calls.length)) throw new OutpostError('EXEC_FAILED', `${cmd}: exit code 1`);
      return { stdout: '', stderr: '' };
    },
  };
}

function host(t: Test, mounts: string[]): { boot: string; mountinfoPath: string } {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-flush-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const mountinfoPath = join(dir, 'mountinfo');
  const lines = ['22 1 8:1 / / rw,relatime - ext4 /dev/sda2 rw', ...mounts.map((m, i) => `${30 + i} 22 8:3 / ${m.replace(/ /g, '\\040')} rw - ext4 /dev/sda1 rw`)];
  writeFileSync(mountinfoPath, `${lines.join('\n')}\n`);
  return { boot: dir, mountinfoPath };
}

t.test('mountinfo parsing decodes octal escapes', async (t) => {
  t.ok(mountPoints('36 35 98:0 /mnt1 /mnt/my\\040boot rw - ext4 /dev/x rw\n').has('/mnt/my boot'));
});

t.test('a separate /boot as root: sync, freeze, thaw', async (t) => {
  const h = host(t, []);
  writeFileSync(h.mountinfoPath, `30 22 8:3 / ${h.boot} rw - ext4 /dev/sda1 rw\n`);
  const exec = recorder();
  t.same(await flushBoot(exec, silentLogger, h.boot, { mountinfoPath: h.mountinfoPath, euid: 0 }), { frozen: true });
  t.same(exec.calls, [`sync -f ${h.boot}`, `fsfreeze -f ${h.boot}`, `fsfreeze -u ${h.boot}`]);
});

t.test('skipped (sync only) when not a mount point, not root, or freeze is refused', async (t) => {
  const h = host(t, ['/elsewhere']);
  let exec = recorder();
  t.match(await flushBoot(exec, silentLogger, h.boot, { mountinfoPath: h.mountinfoPath, euid: 0 }), { frozen: false, skipped: /not a separate mount point/ });
  t.same(exec.calls, [`sync -f ${h.boot}`]);

  writeFileSync(h.mountinfoPath, `30 22 8:3 / ${h.boot} rw - ext4 /dev/sda1 rw\n`);
  exec = recorder();
  t.match(await flushBoot(exec, silentLogger, h.boot, { mountinfoPath: h.mountinfoPath, euid: 1000 }), { frozen: false, skipped: /not root/ });
  t.same(exec.calls, [`sync -f ${h.boot}`]);

  exec = recorder((cmd, args) => cmd === 'fsfreeze' && args[0] === '-f');
  t.match(await flushBoot(exec, silentLogger, h.boot, { mountinfoPath: h.mountinfoPath, euid: 0 }), { frozen: false, skipped: /fsfreeze -f failed/ });

  exec = recorder();
  t.match(await flushBoot(exec, silentLogger, '/', { mountinfoPath: h.mountinfoPath, euid: 0 }), { skipped: /\/ is not a separate mount point/ }, 'never the root fs');
});

t.test('a failing thaw is retried, and is an error if it never succeeds', async (t) => {
  const h = host(t, []);
  writeFileSync(h.mountinfoPath, `30 22 8:3 / ${h.boot} rw - ext4 /dev/sda1 rw\n`);
  let exec = recorder((cmd, args, call) => cmd === 'fsfreeze' && args[0] === '-u' && call === 3);
  t.same(await flushBoot(exec, silentLogger, h.boot, { mountinfoPath: h.mountinfoPath, euid: 0 }), { frozen: true });
  t.equal(exec.calls.length, 4, 'one retry');

  exec = recorder((cmd, args) => cmd === 'fsfreeze' && args[0] === '-u');
  const err = await flushBoot(exec, silentLogger, h.boot, { mountinfoPath: h.mountinfoPath, euid: 0 }).catch((e: unknown) => e);
  t.ok(isOutpostError(err, 'OSTREE_FAILED'));
  t.match((err as Error).message, /is frozen and fsfreeze -u failed 3 times/);

  exec = recorder((cmd) => cmd === 'sync');
  t.ok(isOutpostError(await flushBoot(exec, silentLogger, h.boot).catch((e: unknown) => e), 'OSTREE_FAILED'), 'a failing sync is an error');
});
