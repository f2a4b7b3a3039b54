/**
 * A grant's reverse tunnel goes only to a bastion of commands.access.tunnelHosts: otherwise any
 * issuer of `grant-access` could have the device connect, with its own tunnel key, to any host.
 * Both the agent's argument schema (`bad-args`) and the service (`ACCESS_REFUSED`) hold to it.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccessService, accessSettings, localAccessHost } from '../../../runtime/access/index.js';
import { grantAccessHandler } from '../../../runtime/commands/handlers/grant-access.js';
import { Outbox } from '../../../runtime/link/index.js';
import { createLogger, type LogRecord } from '../../../runtime/logs/index.js';
import type { Exec } from '../../../runtime/platform/index.js';
import { Store } from '../../../runtime/store/index.js';
import { until } from '../../../scripts/world/until.js';

const principal = 'jit-nobody';

/** An ed25519 public key line as ssh-keygen writes one. */
function sshPublicKey(): string {
  const withLength = (bytes: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  const blob = Buffer.concat([withLength(Buffer.from('ssh-ed25519')), withLength(randomBytes(32))]);
  return `ssh-ed25519 ${blob.toString('base64')} operator@laptop`;
}

const section = (tunnelHosts: string[], tunnels = true) => ({ principals: [principal], maxDurationSec: 3600, sshdPort: 22, tunnels, tunnelHosts, loginPollSec: 3600 });
/** Port 1 on the loopback: the allowed tunnel's ssh is refused at once, and started again until the grant ends. */
const tunnelTo = (host: string) => ({ host, port: 1, user: 'gw', hostKey: sshPublicKey().split(' ').slice(0, 2).join(' '), remotePort: 40022 });

t.test('the agent rejects a tunnel to a host off the list as bad args naming the setting', async (t) => {
  const settings = accessSettings(section(['Bastion.Example.com']), '/nonexistent');
  const { args } = grantAccessHandler(settings, () => {
    throw new Error('not reached');
  });
  const grant = (tunnel: ReturnType<typeof tunnelTo>) => args.safeParse({ publicKey: sshPublicKey(), principal, durationSec: 60, tunnel });
  const refused = grant(tunnelTo('evil.example.net'));
  t.notOk(refused.success);
  t.match(refused.error?.issues, [{ path: ['tunnel', 'host'], message: 'not in commands.access.tunnelHosts (evil.example.net)' }]);
  t.ok(grant(tunnelTo('bastion.example.COM')).success, 'a listed name, in any case');
  t.notOk(grant(tunnelTo('bastion.example.com.evil.example.net')).success, 'exact names only');

  const off = grantAccessHandler(accessSettings(section(['bastion.example.com'], false), '/nonexistent'), () => {
    throw new Error('not reached');
  });
  t.match(off.args.safeParse({ publicKey: sshPublicKey(), principal, durationSec: 60, tunnel: tunnelTo('bastion.example.com') }).error?.issues, [{ path: ['tunnel'], message: /commands\.access\.tunnels/ }]);
});

t.test('the service refuses a tunnel to a host off the list before anything is stored or started', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-access-tunnel-hosts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['keys', 'proc', 'state/access']) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, 'passwd'), '');
  // The device's tunnel key exists already, so nothing needs ssh-keygen.
  writeFileSync(join(dir, 'state/access/tunnel-key'), '', { mode: 0o600 });
  writeFileSync(join(dir, 'state/access/tunnel-key.pub'), `${sshPublicKey()}\n`);
  const records: LogRecord[] = [];
  const log = createLogger({ level: 'info', sinks: [(record) => records.push(record)] });
  const store = await Store.open({ location: join(dir, 'db'), version: 1 });
  t.teardown(() => store.close());
  const outbox = await Outbox.open(store, { maxBytes: 1024 * 1024, log });
  const execs: string[] = [];
  const exec = {
    run: async (file: string) => {
      execs.push(file);
      throw new Error('no program runs in this test');
    },
  } as unknown as Exec;
  const service = new AccessService({
    settings: accessSettings(section(['LOCALHOST']), join(dir, 'state')),
    deviceId: 'gw-1',
    store: () => store,
    outbox: () => outbox,
    host: localAccessHost({ keysDir: join(dir, 'keys'), principals: [principal], maxDurationSec: 3600, log, procDir: join(dir, 'proc'), passwdFile: join(dir, 'passwd') }),
    exec,
    log,
    bootId: async () => 'boot-1',
  });
  await service.start();
  t.teardown(() => service.stop());
  const tunnelsStarted = () => records.filter((r) => r.msg === 'tunnel starting').map((r) => r.host);

  await t.rejects(service.grant('g-evil', { publicKey: sshPublicKey(), principal, durationSec: 600, tunnel: tunnelTo('evil.example.net') }), {
    code: 'ACCESS_REFUSED',
    message: 'tunnel host evil.example.net is not in commands.access.tunnelHosts',
  });
  t.same(await service.active(), [], 'no grant stored');
  t.same(execs, [], 'no program run');

  const granted = await service.grant('g-ok', { publicKey: sshPublicKey(), principal, durationSec: 600, tunnel: tunnelTo('localhost') });
  t.match(granted, { grantId: 'g-ok', tunnel: { host: 'localhost', remotePort: 40022 } }, 'a listed host, in any case, passes');
  await until('the allowed tunnel started', () => (tunnelsStarted().length > 0 ? true : undefined), 10_000);
  t.same(tunnelsStarted(), ['localhost'], 'the only tunnel started is the allowed one');
});
