import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

const unitPath = new URL('../../../systemd/outpost.service', import.meta.url);
const unitText = readFileSync(unitPath, 'utf8');

/** systemd-analyze checks that ExecStart exists, so the copy points it at this checkout's build. */
function unitCopy(t: Test, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'outpost.service');
  writeFileSync(file, text.replace('/usr/bin/outpost', new URL('../../../dist/runtime/cli/outpost.js', import.meta.url).pathname));
  return file;
}

function directive(name: string): string[] {
  return unitText.split('\n').filter((l) => l.startsWith(`${name}=`)).map((l) => l.slice(name.length + 1));
}

t.test('systemd-analyze verify accepts the unit', async (t) => {
  const result = await execa('systemd-analyze', ['verify', unitCopy(t, unitText)], { reject: false });
  t.equal(result.stderr, '', 'no warnings');
  t.equal(result.exitCode, 0);
});

t.test('systemd-analyze verify catches a broken unit (the check can fail)', async (t) => {
  const result = await execa('systemd-analyze', ['verify', unitCopy(t, unitText.replace('Type=notify', 'Type=notifyy'))], { reject: false });
  t.match(result.stderr, /Failed to parse service type|notifyy/);
});

t.test('the unit declares notify, watchdog, restart and hardening', async (t) => {
  t.same(directive('Type'), ['notify']);
  t.match(directive('WatchdogSec')[0], /^\d+s$/);
  t.same(directive('Restart'), ['on-failure']);
  t.same(directive('ProtectSystem'), ['strict']);
  t.same(directive('NoNewPrivileges'), ['yes']);
  t.same(directive('PrivateTmp'), ['yes']);
  t.same(directive('User'), ['outpost'], 'the agent runs as its own user (outpost.sysusers.conf)');
  t.same(directive('CapabilityBoundingSet'), [''], 'no capability: deploy and reboot are the installer\'s');
  t.same(directive('ReadWritePaths'), [], 'writes only its StateDirectory and RuntimeDirectory');
  t.same(directive('StateDirectory'), ['outpost']);
  const stopSec = Number.parseInt(directive('TimeoutStopSec')[0] ?? '0', 10);
  t.ok(stopSec * 1000 > 10_000, 'systemd waits longer than outpost\'s own bounded stop');
});

t.test('systemd-analyze security rates the unit at most 2.0 (issue 18: the unprivileged agent)', async (t) => {
  const result = await execa('systemd-analyze', ['security', '--offline=true', unitCopy(t, unitText)], { reject: false });
  const exposure = /Overall exposure level for \S+: ([\d.]+)/.exec(result.stdout)?.[1];
  t.ok(exposure !== undefined, 'exposure reported');
  t.ok(Number(exposure) <= 2.0, `exposure ${exposure} <= 2.0`);
});

t.test('the unit runs node with the flags the memory benchmark measured', async (t) => {
  const { daemonNodeOptions } = await import('../../../bench/startup-memory.js');
  t.same(directive('Environment').filter((e) => e.includes('NODE_OPTIONS')), [`"NODE_OPTIONS=${daemonNodeOptions}"`]);
});
