import t, { type Test } from 'tap';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, loadConfigLayers, validateConfigFile } from '../../../runtime/config/index.js';
import { OutpostError } from '../../../runtime/errors.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function write(dir: string, name: string, doc: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
  return file;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof OutpostError) return err.message.split('\n');
    throw err;
  }
  throw new Error('expected the config to be rejected');
}

const broker = { url: 'mqtts://broker.example:8883', caFile: '/etc/outpost/ca.pem', certFile: '/etc/outpost/device.pem', keyFile: '/etc/outpost/device.key' };

t.test('a minimal file gets every default', async (t) => {
  const dir = tempDir(t);
  const config = loadConfig({ path: write(dir, 'c.json', { deviceId: 'gw-1' }), env: {} });
  t.same(config, {
    deviceId: 'gw-1',
    paths: { stateDir: '/var/lib/outpost', runDir: '/run/outpost' },
    lifecycle: { stopTimeoutMs: 10_000 },
    api: { socketMode: '0660' },
    log: { level: 'info' },
    installer: { stateDir: '/var/lib/outpost-installer', idleExitSec: 60 },
    outbox: { maxBytes: 16 * 1024 * 1024 },
    health: {
      checks: [],
      greenboot: { dir: '/etc/greenboot', intervalSec: 300, timeoutSec: 60 },
      backoffMinSec: 30,
      backoffMaxSec: 3600,
      rebootBreaker: { maxReboots: 3, windowSec: 86_400 },
      cgroupRoot: '/sys/fs/cgroup',
      maxLoopLagMs: 5_000,
    },
  });
  t.ok(Object.isFrozen(config), 'config is frozen once validated');
});

t.test('every problem is reported at once as file: field.path: message', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'c.json', {
    deviceId: 'gw/1',
    brokr: {},
    broker: { ...broker, url: 'mqtt://insecure:1883', keepaliveSec: '60', keyFile: undefined },
    log: { level: 'loud' },
  });
  const problems = problemsOf(() => validateConfigFile(file));
  t.match(problems, [
    `${file}: deviceId: must be 1-64 characters`,
    `${file}: broker.url: must be an mqtts://`,
    `${file}: broker.keyFile: is required`,
    `${file}: broker.keepaliveSec: Invalid input: expected number`,
    `${file}: log.level: Invalid option`,
    `${file}: brokr: unknown key`,
  ]);
  t.equal(problems.length, 6);
});

t.test('unknown nested keys are errors, so typos never pass silently', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'c.json', { deviceId: 'gw-1', broker: { ...broker, keepAliveSec: 30 } });
  t.same(problemsOf(() => validateConfigFile(file)), [`${file}: broker.keepAliveSec: unknown key`]);
});

t.test('cross-field rules name the field to change', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'c.json', { deviceId: 'gw-1', broker: { ...broker, reconnectMinMs: 5000, reconnectMaxMs: 2000 } });
  t.same(problemsOf(() => validateConfigFile(file)), [`${file}: broker.reconnectMaxMs: must be at least reconnectMinMs`]);
});

t.test('commands need the broker and the update sections, and say why', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'c.json', { deviceId: 'gw-1', commands: {} });
  t.same(problemsOf(() => validateConfigFile(file)), [
    `${file}: commands: needs the "broker" section: commands arrive through the broker`,
    `${file}: commands: needs the "update" section: who may send commands is part of the signed update metadata`,
  ]);
});

t.test('tunnels go only to the bastions of commands.access.tunnelHosts, and are off without one', async (t) => {
  const dir = tempDir(t);
  const withAccess = (access: Record<string, unknown>) =>
    write(dir, 'c.json', { deviceId: 'gw-1', broker, update: { server: 'https://updates.example', hardware: 'gw' }, commands: { access: { principals: ['ops'], ...access } } });
  const access = (file: string) => validateConfigFile(file).commands?.access;

  t.match(access(withAccess({})), { tunnels: false, tunnelHosts: [] }, 'a config from before the list loads, tunnels off');
  t.match(access(withAccess({ tunnelHosts: ['bastion.example.com', '192.0.2.7'] })), { tunnels: true, tunnelHosts: ['bastion.example.com', '192.0.2.7'] }, 'naming a bastion turns them on');
  t.match(access(withAccess({ tunnels: false, tunnelHosts: ['bastion.example.com'] })), { tunnels: false }, 'tunnels: false still turns them off');
  // `tunnels: true` was valid (and the default) before the list: such a config still loads, or the
  // device could never take this release; with no bastion there is nowhere a tunnel may go.
  t.match(access(withAccess({ tunnels: true })), { tunnels: false, tunnelHosts: [] }, 'tunnels: true from before the list loads, tunnels off');
  t.match(access(withAccess({ tunnels: true, tunnelHosts: ['bastion.example.com'] })), { tunnels: true });
  const option = withAccess({ tunnelHosts: ['-oProxyCommand=x'] });
  t.same(problemsOf(() => validateConfigFile(option)), [`${option}: commands.access.tunnelHosts.0: must be a host name or address`]);
});

t.test('invalid JSON names the line and column', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'c.json', '{\n  "deviceId": "gw-1",\n}\n');
  const [problem] = problemsOf(() => validateConfigFile(file));
  t.match(problem, new RegExp(`^${file}: \\(root\\): invalid JSON at line 3 column 1`));
});

t.test('a missing file is CONFIG_UNREADABLE and names the file', async (t) => {
  const dir = tempDir(t);
  t.throws(() => loadConfig({ path: join(dir, 'nope.json'), env: {} }), { code: 'CONFIG_UNREADABLE', message: /nope\.json: \(file\): cannot read: file not found/ });
});

t.test('the writable overlay in stateDir wins, and its problems name the overlay file', async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const base = write(dir, 'c.json', { deviceId: 'gw-1', paths: { stateDir }, log: { level: 'warn' } });
  write(stateDir, 'config.json', { log: { level: 'debug' } });
  t.equal(loadConfig({ path: base, env: {} }).log.level, 'debug');

  // set-config checks the overlay it would write with the strict loader: refused, naming the file.
  const overlay = join(stateDir, 'config.json');
  t.match(problemsOf(() => loadConfig({ path: base, env: {}, overlayDocument: { lifecycle: { stopTimeoutMs: -1 } } })), [`${overlay}: lifecycle.stopTimeoutMs:`]);
});

t.test('an overlay the running release cannot read does not stop the load: its settings are left out and reported', async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const base = write(dir, 'c.json', { deviceId: 'gw-1', paths: { stateDir }, log: { level: 'warn' }, lifecycle: { stopTimeoutMs: 5000 } });
  const overlay = join(stateDir, 'config.json');

  // Written by set-config under a newer release, read after a rollback: a key this one does not know.
  write(stateDir, 'config.json', { log: { level: 'debug', futureKey: true }, lifecycle: { stopTimeoutMs: -1 } });
  const loaded = loadConfigLayers({ path: base, env: {} });
  t.equal(loaded.config.log.level, 'debug', 'what the overlay sets and this release reads applies');
  t.equal(loaded.config.lifecycle.stopTimeoutMs, 5000, 'the image\'s value where the overlay\'s is invalid');
  t.same(loaded.ignored.map((p) => `${p.file}: ${p.field}`).sort(), [`${overlay}: lifecycle.stopTimeoutMs`, `${overlay}: log.futureKey`]);
  t.match(loaded.ignored.find((p) => p.field === 'log.futureKey'), { message: 'unknown key' });
  t.equal(loadConfig({ path: base, env: {} }).log.level, 'debug', 'loadConfig loads it too');

  // An object replaced by a value hides nothing: that key is left out.
  write(stateDir, 'config.json', { log: 'loud', deviceId: 'gw-9' });
  const replaced = loadConfigLayers({ path: base, env: {} });
  t.equal(replaced.config.deviceId, 'gw-9');
  t.equal(replaced.config.log.level, 'warn');
  t.match(replaced.ignored, [{ file: overlay, field: 'log' }]);

  // Not JSON (a hand edit, a torn write by other means): the whole overlay is left out.
  write(stateDir, 'config.json', '{"log": ');
  const torn = loadConfigLayers({ path: base, env: {} });
  t.equal(torn.config.log.level, 'warn');
  t.match(torn.ignored, [{ file: overlay, field: '(root)', message: /invalid JSON/ }, { file: overlay, field: '(root)', message: 'the whole overlay is ignored' }]);

  // A list is one setting: a check of a kind this release does not know leaves the overlay's list
  // out, the image's checks apply.
  const check = { name: 'app', kind: 'http', url: 'http://127.0.0.1:8080/health' };
  write(stateDir, 'config.json', { log: { level: 'debug' }, health: { checks: [check, { name: 'x', kind: 'future-kind' }] } });
  const listed = loadConfigLayers({ path: base, env: {} });
  t.equal(listed.config.log.level, 'debug');
  t.same(listed.config.health.checks, []);
  t.match(listed.ignored, [{ file: overlay, field: 'health.checks', message: /^health\.checks\.1\.kind: / }]);
  t.notOk(listed.ignored.some((p) => p.field === '(root)'), 'not the whole overlay');

  // A key with a dot in its name is still one key.
  write(stateDir, 'config.json', { log: { level: 'debug', 'future.key': 1 } });
  const dotted = loadConfigLayers({ path: base, env: {} });
  t.equal(dotted.config.log.level, 'debug');
  t.same(dotted.ignored.map((p) => p.field), ['log.future.key']);

  // Problems that show only once others are gone: every pass validates what is left.
  write(stateDir, 'config.json', { log: 'loud', health: 7, lifecycle: { stopTimeoutMs: -1, futureKey: 1 }, update: { checkIntervalSec: 'soon' } });
  const layered = loadConfigLayers({ path: base, env: {} });
  t.equal(layered.config.lifecycle.stopTimeoutMs, 5000);
  t.same([...new Set(layered.ignored.map((p) => p.field))].sort(), ['health', 'lifecycle.futureKey', 'lifecycle.stopTimeoutMs', 'log', 'update', 'update.checkIntervalSec'], 'each left out on its own, not the whole overlay');
  t.match(layered.ignored.find((p) => p.field === 'update'), { message: /^update\.(server|hardware): is required/ }, 'a section the overlay adds without what it needs is left out');

  // The image's own file stays strict, whatever the overlay holds.
  const broken = write(dir, 'broken.json', { deviceId: 'gw-1', paths: { stateDir }, lifecycle: { stopTimeoutMs: -1 } });
  write(stateDir, 'config.json', { log: { level: 'debug' } });
  t.match(problemsOf(() => loadConfigLayers({ path: broken, env: {} })), [`${broken}: lifecycle.stopTimeoutMs:`]);
});

t.test('protected settings in the overlay stay strict: leaving one out could widen what the image allows', async (t) => {
  const dir = tempDir(t);
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const base = write(dir, 'c.json', { deviceId: 'gw-1', paths: { stateDir } });
  const overlay = join(stateDir, 'config.json');
  write(stateDir, 'config.json', { api: { futureKey: true } });
  t.match(problemsOf(() => loadConfigLayers({ path: base, env: {} })), [`${overlay}: api.futureKey: unknown key`]);
  write(stateDir, 'config.json', { deviceId: 'bad/id', log: { level: 'debug' } });
  t.match(problemsOf(() => loadConfigLayers({ path: base, env: {} })), [`${overlay}: deviceId:`]);
  // Nor taken out with a section around it: here the overlay adds an update section without what
  // it needs, and leaving the section out would leave out update.rootFile with it.
  write(stateDir, 'config.json', { update: { rootFile: '/etc/outpost/narrow-root.json', checkIntervalSec: 60 }, log: { level: 'debug' } });
  t.match(problemsOf(() => loadConfigLayers({ path: base, env: {} })), [/update\.(server|hardware): is required/]);
  // A key whose name only looks like a protected path is an unknown key like any other.
  write(stateDir, 'config.json', { 'broker.x': 1, log: { level: 'debug' } });
  const lookalike = loadConfigLayers({ path: base, env: {} });
  t.equal(lookalike.config.log.level, 'debug');
  t.same(lookalike.ignored.map((p) => p.field), ['broker.x']);
  // A protected setting the overlay sets is not dropped with the rest either.
  write(stateDir, 'config.json', { deviceId: 'gw-2', log: { futureKey: 1 } });
  t.equal(loadConfigLayers({ path: base, env: {} }).config.deviceId, 'gw-2', 'the other settings are still left out on their own');
});

t.test('OUTPOST_CONFIG and the directory variables override the file', async (t) => {
  const dir = tempDir(t);
  const file = write(dir, 'c.json', { deviceId: 'gw-2' });
  const config = loadConfig({ env: { OUTPOST_CONFIG: file, OUTPOST_STATE_DIR: join(dir, 's'), OUTPOST_RUN_DIR: join(dir, 'r') } });
  t.same(config.paths, { stateDir: join(dir, 's'), runDir: join(dir, 'r') });
  t.equal(config.deviceId, 'gw-2');
});

t.test('health checks: defaults per check, and problems named by their field path', async (t) => {
  const dir = tempDir(t);
  const config = loadConfig({ path: write(dir, 'c.json', { deviceId: 'gw-1', health: { checks: [{ name: 'app', kind: 'http', url: 'http://127.0.0.1:8080/health', remediation: { action: 'restart-unit', unit: 'app.service' } }] } }), env: {} });
  t.same(config.health.checks[0], {
    name: 'app',
    kind: 'http',
    url: 'http://127.0.0.1:8080/health',
    status: [200],
    intervalSec: 30,
    timeoutSec: 10,
    failAfter: 3,
    recoverAfter: 1,
    severity: 'wanted',
    remediation: { action: 'restart-unit', unit: 'app.service' },
  });
  const bad = write(dir, 'bad.json', {
    deviceId: 'gw-1',
    health: {
      checks: [
        { name: 'burn', kind: 'cpu', maxPercent: 80 },
        { name: 'disk', kind: 'disk', path: '/' },
        { name: 'burn', kind: 'exec', command: ['true'] },
        { name: 'page', kind: 'http', url: 'http://x/', bodyMatch: '(' },
        { name: 'fix', kind: 'tcp', host: 'h', port: 1, remediation: { action: 'restart-unit', unit: 'not a unit' } },
      ],
      backoffMinSec: 100,
      backoffMaxSec: 10,
    },
  });
  const problems = problemsOf(() => loadConfig({ path: bad, env: {} })).join('\n');
  for (const expected of [
    'health.checks.0.maxPercent: maxPercent needs unit or cgroup',
    'health.checks.1.minFreeBytes: needs minFreeBytes, minFreePercent or minFreeInodes',
    'health.checks.2.name: burn is used by an earlier check',
    'health.checks.3.bodyMatch: must be a valid regular expression',
    'health.checks.4.remediation.unit: must be a unit name',
    'health.backoffMaxSec: must be at least backoffMinSec',
  ]) t.match(problems, expected);
  const unsupported = write(dir, 'unsupported.json', { deviceId: 'gw-1', health: { checks: [{ name: 'link', kind: 'mqtt' }, { name: 'app', kind: 'tcp', host: 'h', port: 1, remediation: { action: 'reboot' } }] } });
  const why = problemsOf(() => loadConfig({ path: unsupported, env: {} })).join('\n');
  t.match(why, 'health.checks.0.kind: an mqtt check needs the "broker" section');
  t.match(why, 'health.checks.1.remediation.action: reboot needs the "update" section');
});
