import t, { type Test } from 'tap';
import { createOtaWorld, type OtaWorld } from '../../../scripts/world/ota-world.js';
import { otaService, type OtaService, type OtaServiceOptions } from '../../../scripts/world/ota-service.js';

async function world(t: Test): Promise<OtaWorld> {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  return ota;
}

async function device(t: Test, ota: OtaWorld, options: OtaServiceOptions): Promise<OtaService> {
  const d = await otaService(ota, options);
  t.teardown(() => d.close());
  return d;
}

t.test('a delta that answers 503 for a while: the service retries on its backoff and converges without a restart', async (t) => {
  const ota = await world(t);
  await ota.release(2, { deltaFrom: [1] });
  const deltaPath = `/tuf/targets/deltas/${ota.ostree.commit(1)}-${ota.ostree.commit(2)}`;
  // More refusals than the downloader's own attempts: the update pauses at least once.
  ota.ostree.server.setFault({ pathPrefix: deltaPath, status: 503, times: 8 });
  // The first scheduled check an hour away and a one-hour interval: only the retry can recover.
  const d = await device(t, ota, { update: { checkIntervalSec: 3600 }, schedule: { firstCheckMs: 3_600_000, retryMinMs: 100, retryMaxMs: 400 } });
  const service = await d.boot();
  const selection = await service.apply();
  t.equal(selection.release?.version, 2, 'release 2 chosen, as `outpost update apply` would');
  const status = await d.waitFor('the trial reboot', (s) => s.state === 'rebooting' && d.reboots.length > 0, 30_000);
  t.equal(status.release?.version, 2);
  const deltaRequests = ota.ostree.server.requests.filter((r) => r.path === deltaPath);
  t.same(deltaRequests.map((r) => r.status), [...Array<number>(8).fill(503), 200], 'eight refusals, then the delta');
  const paused = d.logs.filter((r) => r.msg === 'update paused; will retry');
  t.ok(paused.length >= 1, `the update paused (${paused.length} times) and was resumed by the schedule`);
  t.ok(paused.every((r) => typeof r.retryInSec === 'number' && r.retryInSec <= 1), 'on the backoff, not the check interval');
  t.notOk(d.logs.some((r) => (r.err as { code?: string } | undefined)?.code === 'UPDATE_BUSY'), 'no tick was refused as busy');

  // The trial boot: the next service commits the release.
  await d.boot();
  const final = await d.waitFor('the commit', (s) => s.state === 'idle' && s.last !== null, 30_000);
  t.match(final.last, { result: 'committed', version: 2 });
});
