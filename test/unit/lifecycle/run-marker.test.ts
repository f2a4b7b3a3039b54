import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { markRunning, markStopped, uncleanStopMessage } from '../../../runtime/lifecycle/index.js';

t.test('the run marker tells a clean stop, a kill in this boot and a boot that ended under outpost apart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-marker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'running');
  const at = new Date('2030-01-01T00:00:00Z');
  t.equal(await markRunning(file, { pid: 10, bootId: 'boot-a', startedAt: at }), null, 'first start');
  await markStopped(file);
  t.equal(await markRunning(file, { pid: 11, bootId: 'boot-a', startedAt: at }), null, 'after a clean stop');
  const killed = await markRunning(file, { pid: 12, bootId: 'boot-a', startedAt: at });
  t.same(killed, { pid: 11, startedAt: at.toISOString(), sameBoot: true });
  t.match(uncleanStopMessage(killed!), /^the outpost before this one \(pid 11, .*\) did not stop cleanly/);
  const cut = await markRunning(file, { pid: 13, bootId: 'boot-b', startedAt: at });
  t.same(cut, { pid: 12, startedAt: at.toISOString(), sameBoot: false });
  t.match(uncleanStopMessage(cut!), /^the last boot ended while outpost ran \(pid 12/);
  writeFileSync(file, 'garbage');
  t.equal(await markRunning(file, { pid: 14, bootId: 'boot-b', startedAt: at }), null, 'an unreadable marker is not a claim');
});
