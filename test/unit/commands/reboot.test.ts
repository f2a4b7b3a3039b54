/** The reboot command reboots only once its result is recorded and queued, never before. */
import t from 'tap';
import { rebootHandler } from '../../../runtime/commands/handlers/reboot.js';
import { newCommand } from '../../../runtime/commands/index.js';

t.test('the reboot waits for the answer (delaySec 0 included)', async (t) => {
  const reboots: string[] = [];
  const handler = rebootHandler(async (reason) => void reboots.push(reason), () => undefined);
  const answered: (() => void)[] = [];
  const command = newCommand({ id: 'r-1', issuer: 'a'.repeat(64), target: { device: 'gw-1' }, type: 'reboot', args: { delaySec: 0 }, validitySec: 60 });
  const output = await handler.run(handler.args.parse({ delaySec: 0 }), { command, signal: new AbortController().signal, whenAnswered: (action) => void answered.push(action), progress: () => undefined });
  t.same(output, { rebootInSec: 0 });
  await new Promise((r) => setTimeout(r, 50));
  t.same(reboots, [], 'not before the result is recorded');
  for (const action of answered) action();
  await new Promise((r) => setTimeout(r, 50));
  t.same(reboots, ['command r-1: remote command'], 'once it is, after the delay');
});
