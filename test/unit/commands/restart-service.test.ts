/**
 * `restart-service`: the agent's allow-list refuses as bad args, the unit name is strict, and the
 * installer checks its own list again. systemctl itself cannot run here (no systemd in the test
 * container): the local adapter is tested against a recording stand-in behind the same Exec port.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema } from '../../../runtime/config/index.js';
import { restartServiceHandler } from '../../../runtime/commands/handlers/restart-service.js';
import { localUnits, restartTimeoutMs, type UnitControl } from '../../../runtime/commands/units.js';
import { installerCall, serveInstaller } from '../../../runtime/installer/index.js';
import { createLogger } from '../../../runtime/logs/index.js';
import type { Exec, ExecOptions } from '../../../runtime/platform/index.js';
import type { UpdateHost } from '../../../runtime/update/index.js';

const log = createLogger({ level: 'error', sinks: [] });

function recordingUnits(): UnitControl & { restarted: string[] } {
  const restarted: string[] = [];
  return { restarted, restart: async (unit) => void restarted.push(unit) };
}

t.test('the agent: a listed unit is restarted; anything else fails the args schema, naming the field', async (t) => {
  const units = recordingUnits();
  const handler = restartServiceHandler(['mosquitto.service', 'modem@0.service'], units);
  const ok = handler.args.safeParse({ unit: 'modem@0.service' });
  t.ok(ok.success);
  t.same(await handler.run(ok.data!, {} as never), { unit: 'modem@0.service', restarted: true });
  t.same(units.restarted, ['modem@0.service']);
  for (const unit of ['sshd.service', 'mosquitto', '-mosquitto.service', 'mosquitto.service;reboot', '../x.service', 'a b.service', 'x.mount', '']) {
    const refused = handler.args.safeParse({ unit });
    t.notOk(refused.success, `refused: ${JSON.stringify(unit)}`);
    t.same(refused.error?.issues[0]?.path, ['unit']);
  }
  t.match(handler.args.safeParse({ unit: 'sshd.service' }).error?.issues[0]?.message, /not in commands\.restartUnits \(mosquitto\.service, modem@0\.service\)/);
  t.match(restartServiceHandler([], units).args.safeParse({ unit: 'sshd.service' }).error?.issues[0]?.message, /empty on this device/);
  t.notOk(handler.args.safeParse({ unit: 'mosquitto.service', extra: 1 }).success, 'closed args');
});

t.test('config: commands.restartUnits takes unit names only; logs defaults to outpost.service', async (t) => {
  const base = { deviceId: 'gw-1', broker: { url: 'mqtts://b', caFile: 'a', certFile: 'b', keyFile: 'c' }, update: { server: 'http://u', hardware: 'h' } };
  const good = configSchema.parse({ ...base, commands: { restartUnits: ['mosquitto.service'] } });
  t.same(good.commands?.restartUnits, ['mosquitto.service']);
  t.same(good.commands?.logs, { unit: 'outpost.service' });
  const bad = configSchema.safeParse({ ...base, commands: { restartUnits: ['rm -rf'] } });
  t.same(bad.error?.issues[0]?.path, ['commands', 'restartUnits', 0]);
});

t.test('the local adapter: systemctl restart -- <unit>, no shell, with a timeout', async (t) => {
  const calls: { cmd: string; args: string[]; opts: ExecOptions | undefined }[] = [];
  const exec: Exec = { run: async (cmd, args, opts) => (calls.push({ cmd, args, opts }), { stdout: '', stderr: '' }) };
  await localUnits(exec).restart('mosquitto.service');
  t.match(calls, [{ cmd: 'systemctl', args: ['restart', '--', 'mosquitto.service'], opts: { timeoutMs: restartTimeoutMs } }]);
  await t.rejects(localUnits(exec).restart('--force.service'), /not a unit name/);
  t.equal(calls.length, 1);
});

t.test('the installer: restarts only what its own list allows, whatever the agent asks', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-units-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const serve = async (name: string, units?: { allowed: readonly string[]; control: UnitControl }) => {
    const socket = join(dir, `${name}.sock`);
    const server = await serveInstaller({ host: {} as UpdateHost, requireSigned: async () => undefined, agentStateDir: dir, log, idleExitMs: 0, onIdle: () => undefined, ...(units ? { units } : {}) }, socket);
    t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
    return socket;
  };
  const units = recordingUnits();
  const socket = await serve('a', { allowed: ['mosquitto.service'], control: units });
  t.equal(await installerCall(socket, { op: 'unit.restart', unit: 'mosquitto.service' }), null);
  t.same(units.restarted, ['mosquitto.service']);
  await t.rejects(installerCall(socket, { op: 'unit.restart', unit: 'sshd.service' }), { code: 'INSTALLER_REFUSED', message: /sshd\.service is not in the installer's commands\.restartUnits/ });
  await t.rejects(installerCall(socket, { op: 'unit.restart', unit: 'x;reboot' }), { code: 'INSTALLER_REFUSED', message: /unit: must be a unit name/ });
  t.same(units.restarted, ['mosquitto.service'], 'nothing else restarted');
  const none = await serve('b');
  await t.rejects(installerCall(none, { op: 'unit.restart', unit: 'mosquitto.service' }), { code: 'INSTALLER_REFUSED' });
});
