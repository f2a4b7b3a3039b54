/**
 * The installer's systemd units: systemd-analyze accepts them, and socket activation works for
 * real: `systemd-socket-activate` (systemd's own LISTEN_FDS implementation) listens, starts
 * `outpost installer` on the first connection and hands it the socket, as outpost-installer.socket does.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import t, { type Test } from 'tap';
import { installerCall } from '../../../runtime/installer/index.js';
import { createOstreeWorld } from '../../../scripts/world/ostree-world.js';
import { outpostBin } from '../../../scripts/world/device.js';
import { until } from '../../../scripts/world/until.js';

const unit = (name: string) => readFileSync(new URL(`../../../systemd/${name}`, import.meta.url), 'utf8');

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-installer-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('systemd-analyze verify accepts the installer socket and service', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'outpost-installer.socket'), unit('outpost-installer.socket'));
  writeFileSync(join(dir, 'outpost-installer.service'), unit('outpost-installer.service').replace('/usr/bin/outpost', outpostBin()));
  const result = await execa('systemd-analyze', ['verify', join(dir, 'outpost-installer.socket'), join(dir, 'outpost-installer.service')], { reject: false });
  t.equal(result.stderr, '', 'no warnings');
  t.equal(result.exitCode, 0);
});

t.test('the installer unit keeps the hardening the issue asks for', async (t) => {
  const text = unit('outpost-installer.service');
  for (const line of ['MemoryDenyWriteExecute=yes', 'ProtectKernelTunables=yes', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'PrivateNetwork=yes', 'IPAddressDeny=any', 'RestrictAddressFamilies=AF_UNIX']) t.match(text, new RegExp(`^${line}$`, 'm'), line);
  t.match(text, /--jitless/, 'node runs without a JIT, which MemoryDenyWriteExecute needs');
  t.match(unit('outpost-installer.socket'), /^SocketMode=0660$/m, 'only root and the agent group may connect');
});

t.test('socket activation: the first request starts the installer, which answers on the socket systemd passed', async (t) => {
  const w = await createOstreeWorld({ versions: [1] });
  t.teardown(() => w.close());
  const dir = tempDir(t);
  const socket = join(dir, 'installer.sock');
  const config = join(dir, 'config.json');
  // installer.socket is left unset: the installer must take the passed socket, not listen itself.
  writeFileSync(
    config,
    JSON.stringify({
      deviceId: 'gw-test-1',
      paths: { stateDir: join(dir, 'state'), runDir: join(dir, 'run') },
      installer: { stateDir: join(dir, 'installer'), idleExitSec: 2 },
      update: { server: 'http://127.0.0.1:9/', hardware: 'gw-demo', sysroot: w.sysroot, osname: w.osname, boot: { backend: 'simulated' } },
    }),
  );
  const activator = execa('systemd-socket-activate', ['-l', socket, process.execPath, outpostBin(), 'installer', '--config', config], { reject: false, all: true });
  t.teardown(() => void activator.kill('SIGKILL'));
  await until('the activator listening', async () => (existsSync(socket) ? true : undefined));
  const deployments = await installerCall(socket, { op: 'deployments' });
  t.same(deployments.map((d) => d.commit), [w.commit(1)], 'the activated installer answered');
  const ended = await activator;
  t.equal(ended.exitCode, 0, 'and exited when idle');
  t.match(ended.all, /"listen":"systemd socket"/, 'it served the socket systemd passed');
  t.match(ended.all, /"op":"deployments".*"msg":"request"/, 'the request was logged');
});
