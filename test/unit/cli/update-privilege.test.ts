import t from 'tap';
import { configSchema } from '../../../runtime/config/index.js';
import { updatePrivilegeProblem } from '../../../runtime/cli/daemon.js';

const update = { server: 'http://127.0.0.1:1/tuf/', ostreeUrl: 'http://127.0.0.1:1/ostree', rootFile: '/etc/outpost/root.json', hardware: 'gw', sysroot: '/', osname: 'outpost', boot: { backend: 'grub', grubEnvFile: '/boot/grub/grubenv' } };
const config = (extra: Record<string, unknown>) => configSchema.parse({ deviceId: 'gw-1', ...extra });

t.test('an unprivileged agent without the installer is a config problem at start, naming installer.socket', async (t) => {
  t.match(updatePrivilegeProblem(config({ update }), 997), /^installer\.socket: not set, and outpost runs as uid 997/);
  t.equal(updatePrivilegeProblem(config({ update }), 0), undefined, 'root runs the update path itself');
  t.equal(updatePrivilegeProblem(config({ update, installer: { socket: '/run/outpost-installer.sock' } }), 997), undefined, 'the installer does it');
  t.equal(updatePrivilegeProblem(config({ update: { ...update, boot: { backend: 'simulated' } } }), 997), undefined, 'the simulated boot needs no root');
  t.equal(updatePrivilegeProblem(config({}), 997), undefined, 'no updates configured');
});
