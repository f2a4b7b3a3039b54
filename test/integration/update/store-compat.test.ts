/**
 * /var/lib/outpost is shared by every deployment: a release on trial writes the store, and when
 * its trial fails, the release before it must still read that store to finish the rollback.
 */
import { join } from 'node:path';
import t from 'tap';
import { ClassicLevel } from 'classic-level';
import { createOtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';

const failingCheck = { 'usr/libexec/outpost/health-check': '#!/bin/sh\necho "app did not start" >&2\nexit 1\n' };
const probation = { windowSec: 2, intervalSec: 1, checks: [{ name: 'app', command: ['/bin/sh', '-c', 'exec "$OUTPOST_DEPLOYMENT_ROOT/usr/libexec/outpost/health-check"'] }] };

/** What a newer outpost on trial leaves: a newer format (readable from this one), new fields, a new collection. */
async function writeAsNewerRelease(location: string): Promise<void> {
  const db = new ClassicLevel<string, unknown>(location, { valueEncoding: 'json' });
  await db.open();
  const meta = db.sublevel<string, unknown>('meta', { valueEncoding: 'json' });
  const update = db.sublevel<string, unknown>('update', { valueEncoding: 'json' });
  const record = (await update.get('record')) as Record<string, unknown>;
  await meta.put('schemaVersion', 2);
  await meta.put('readableFrom', 1);
  await update.put('record', { ...record, stagedBy: 'outpost 9.9', release: { ...(record.release as object), signedAt: '2026-12-01T00:00:00Z' } });
  await db.sublevel<string, unknown>('newer-feature', { valueEncoding: 'json' }).put('k', { any: 'thing' });
  await db.close();
}

t.test('the release before reads the store a newer release wrote on trial, and finishes the rollback', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  const d = otaDevice(ota, { probation });
  t.teardown(d.cleanup);
  await ota.release(2, { deltaFrom: [1], extra: failingCheck });
  const { daemon } = await d.boot();
  await d.cli(['update', 'apply']);
  await daemon;
  // The trial boot: release 2's outpost fails probation, starts the rollback and reboots.
  const { daemon: onTrial } = await d.boot();
  await onTrial;
  await writeAsNewerRelease(join(d.world.stateDir, 'store'));
  const status = await d.converge();
  t.match(status.last, { result: 'rolledBack', version: 2, reason: /health checks failed during probation: app/ }, 'rolled back by the older outpost');
  t.equal(status.bootedCommit, ota.ostree.commit(1));
  const db = new ClassicLevel<string, unknown>(join(d.world.stateDir, 'store'), { valueEncoding: 'json' });
  await db.open();
  t.equal(await db.sublevel<string, unknown>('meta', { valueEncoding: 'json' }).get('schemaVersion'), 2, 'the format stays the newer one');
  t.same(await db.sublevel<string, unknown>('newer-feature', { valueEncoding: 'json' }).get('k'), { any: 'thing' }, 'and so does its data');
  await db.close();
});
