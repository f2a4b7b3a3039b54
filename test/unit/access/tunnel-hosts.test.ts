/**
 * A grant's reverse tunnel goes only to a bastion of commands.access.tunnelHosts: otherwise any
 * issuer of `grant-access` could have the device connect, with its own tunnel key, to any host.
 * Both the agent's argument schema (`bad-args`) and the service (`ACCESS_REFUSED`) hold to it.
 */
import t from 'tap';
import { accessSettings } from '../../../runtime/access/index.js';
import { grantAccessHandler } from '../../../runtime/commands/handlers/grant-access.js';
import { until } from '../../../scripts/world/until.js';
import { accessPrincipal as principal, accessSection, accessServiceWorld, sshPublicKey } from '../../fixtures/access-service.js';

const section = (tunnelHosts: string[], tunnels = true) => accessSection({ tunnels, tunnelHosts });
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
  const world = await accessServiceWorld(t);
  const { records, execs } = world;
  const service = world.service({ section: section(['LOCALHOST']) });
  await service.start();
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

t.test('a stored grant whose bastion left the list does not open its tunnel again at the next start', async (t) => {
  const world = await accessServiceWorld(t);
  const tunnelsStarted = () => world.records.filter((r) => r.msg === 'tunnel starting').map((r) => r.host);
  const before = world.service({ section: section(['localhost']) });
  await before.start();
  await before.grant('g-tunnel', { publicKey: sshPublicKey(), principal, durationSec: 600, tunnel: tunnelTo('localhost') });
  await until('its tunnel started', () => (tunnelsStarted().length > 0 ? true : undefined), 10_000);
  await before.stop();
  const started = tunnelsStarted().length;

  const after = world.service({ section: section(['bastion.example.com']) });
  await after.start();
  t.equal((await after.active()).length, 1, 'the grant itself stays (its key and expiry)');
  await until('the refusal is logged', () => (world.records.some((r) => r.msg.startsWith('the tunnel of a grant is not opened')) ? true : undefined), 10_000);
  t.equal(tunnelsStarted().length, started, 'no tunnel to the bastion no longer listed');
});
