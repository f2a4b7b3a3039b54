import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createOtaWorld } from '../../../scripts/world/ota-world.js';
import { otaService } from '../../../scripts/world/ota-service.js';

t.test('outpost stopped (systemctl stop, shutdown) during probation: no verdict; the release is judged at the next start and commits', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  await ota.release(2, { deltaFrom: [1] });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-stop-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const appUp = join(dir, 'app-up');
  // The application comes up slowly: its check fails until the flag exists.
  const d = await otaService(ota, { update: { probation: { windowSec: 3, intervalSec: 1, checks: [{ name: 'app', command: ['test', '-e', appUp] }] } }, schedule: { firstCheckMs: 3_600_000 } });
  t.teardown(() => d.close());
  const service = await d.boot();
  t.equal(readFileSync(join(d.stateDir, 'trial-guard.min-sec'), 'utf8'), '123\n', 'the trial guard is asked for the window plus start-up time');
  await service.apply();
  await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length === 1, 30_000);
  const onTrial = await d.boot();
  await d.waitFor('probation', (s) => s.state === 'probation', 30_000);
  await onTrial.stop();
  writeFileSync(appUp, '');
  // Past the window: a stopped outpost must not have judged the release meanwhile.
  await new Promise((r) => setTimeout(r, 4500));
  const stopped = await onTrial.status();
  t.match(stopped, { state: 'probation', last: null }, 'still on probation: no rollback for a stop');
  t.ok(d.logs.some((r) => r.msg === 'update paused; will retry' && (r.err as { code?: string } | undefined)?.code === 'UPDATE_STOPPING'), 'the step paused with UPDATE_STOPPING');
  await d.boot();
  const done = await d.waitFor('the verdict', (s) => s.state === 'idle' && s.last !== null, 30_000);
  t.match(done.last, { result: 'committed', version: 2 }, 'judged at the next start: the app is up, release 2 commits');
});

t.test('two applies at once (an operator and the schedule choosing together): both are answered with the one update under way', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  await ota.release(2, { deltaFrom: [1] });
  const d = await otaService(ota, { schedule: { firstCheckMs: 3_600_000 } });
  t.teardown(() => d.close());
  const service = await d.boot();
  // Both see an idle machine before either begins: the later one used to meet UPDATE_BUSY. Which
  // of the two begins is the store's and the chain's order, not the call order.
  const answers = await Promise.all([service.apply(), service.apply()]);
  const told = answers.filter((a) => 'inProgress' in a);
  t.equal(told.length, 1, 'one began the update, the other is told it is under way');
  t.match(told[0], { release: { version: 2 }, inProgress: 'downloading' }, 'what is under way: release 2, downloading');
  t.match(answers.find((a) => !('inProgress' in a)), { release: { version: 2 } }, 'the one that began names release 2');
  await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length === 1, 30_000);
});
