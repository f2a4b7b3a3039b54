import t, { type Test } from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { greenbootChecks, runGreenbootHooks } from '../../../runtime/health/greenboot.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { createExec } from '../../../runtime/platform/index.js';

function greenbootDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-greenboot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function script(path: string, body: string, mode = 0o755): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, mode);
}

const settings = (dir: string) => ({ dir, intervalSec: 300, timeoutSec: 5 });

t.test('required.d and wanted.d executables become exec checks in name order; others are left out', async (t) => {
  const dir = greenbootDir(t);
  script(join(dir, 'check', 'required.d', '10-Net Up.sh'), 'exit 0');
  script(join(dir, 'check', 'required.d', '01-disk.sh'), 'exit 0');
  script(join(dir, 'check', 'required.d', 'README'), 'not a script', 0o644);
  mkdirSync(join(dir, 'check', 'required.d', 'subdir'));
  script(join(dir, 'check', 'wanted.d', 'app.sh'), 'exit 1');
  const checks = await greenbootChecks(settings(dir));
  t.same(
    checks.map((c) => [c.name, c.severity, c.kind === 'exec' ? c.command : []]),
    [
      ['greenboot-required-01-disk.sh', 'required', [join(dir, 'check', 'required.d', '01-disk.sh')]],
      ['greenboot-required-10-net-up.sh', 'required', [join(dir, 'check', 'required.d', '10-Net Up.sh')]],
      ['greenboot-wanted-app.sh', 'wanted', [join(dir, 'check', 'wanted.d', 'app.sh')]],
    ],
  );
  t.match(checks[0], { intervalSec: 300, timeoutSec: 5, failAfter: 1, recoverAfter: 1 }, 'one failing run fails it, as in greenboot; bounded by the timeout');
});

t.test('no greenboot directory: no checks, no hooks', async (t) => {
  const dir = join(greenbootDir(t), 'missing');
  t.same(await greenbootChecks(settings(dir)), []);
  t.same(await runGreenbootHooks(settings(dir), 'green', createExec(silentLogger)), []);
});

t.test('green.d runs every script in order, a failing one does not stop the rest; red.d is separate', async (t) => {
  const dir = greenbootDir(t);
  const trail = join(dir, 'trail');
  script(join(dir, 'green.d', '01-first'), `echo first >> ${trail}`);
  script(join(dir, 'green.d', '02-fails'), `echo fails >> ${trail}; exit 3`);
  script(join(dir, 'green.d', '03-last'), `echo last >> ${trail}`);
  script(join(dir, 'red.d', '01-red'), `echo red >> ${trail}`);
  const runs = await runGreenbootHooks(settings(dir), 'green', createExec(silentLogger));
  t.same(readFileSync(trail, 'utf8'), 'first\nfails\nlast\n');
  t.match(runs, [{ ok: true }, { ok: false, error: /exit code 3/ }, { ok: true }]);
  await runGreenbootHooks(settings(dir), 'red', createExec(silentLogger));
  t.same(readFileSync(trail, 'utf8'), 'first\nfails\nlast\nred\n');
});

t.test('a hung hook is killed at the timeout and reported', async (t) => {
  const dir = greenbootDir(t);
  script(join(dir, 'red.d', 'hang'), 'exec sleep 100');
  const started = Date.now();
  const runs = await runGreenbootHooks({ dir, intervalSec: 300, timeoutSec: 1 }, 'red', createExec(silentLogger));
  t.ok(Date.now() - started < 8000, 'bounded');
  t.match(runs, [{ ok: false, error: /timed out/ }]);
});

t.test('names that would clash (with a configured check or each other) get a number; a directory gives at most 32 checks', async (t) => {
  const dir = greenbootDir(t);
  script(join(dir, 'check', 'wanted.d', 'a b'), 'exit 0');
  script(join(dir, 'check', 'wanted.d', 'a-b'), 'exit 0');
  script(join(dir, 'check', 'wanted.d', 'A_B'), 'exit 0');
  const checks = await greenbootChecks(settings(dir), new Set(['greenboot-wanted-a-b']));
  t.same(checks.map((c) => c.name), ['greenboot-wanted-a_b', 'greenboot-wanted-a-b-2', 'greenboot-wanted-a-b-3']);
  for (let i = 0; i < 40; i++) script(join(dir, 'check', 'required.d', `s${String(i).padStart(2, '0')}`), 'exit 0');
  const notes: string[] = [];
  const many = await greenbootChecks(settings(dir), new Set(), (m) => notes.push(m));
  t.equal(many.filter((c) => c.severity === 'required').length, 32);
  t.match(notes, [/holds 40 scripts; only the first 32 in name order run/]);
});
