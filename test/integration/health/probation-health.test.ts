/**
 * Health and the update path together, on the real daemon with the simulated bootloader: a
 * release whose required health check fails in its trial is rolled back by probation (the check
 * runs there though probation's own list is empty), no health reboot is taken while the trial is
 * judged, greenboot's red.d runs after the rollback, and back on the old release, which fails
 * the same check, outpost stays up in safe mode instead of rebooting.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createOtaWorld } from '../../../scripts/world/ota-world.js';
import { otaDevice } from '../../../scripts/world/ota-device.js';
import { until } from '../../../scripts/world/until.js';

t.test('a required health check failing in the trial rolls the release back; then safe mode, not a reboot loop', async (t) => {
  const ota = await createOtaWorld({ versions: [1] });
  t.teardown(() => ota.close());
  await ota.release(2, { deltaFrom: [1] });
  const device = otaDevice(ota);
  t.teardown(() => device.cleanup());
  const broken = join(device.world.dir, 'broken');
  const greenboot = join(device.world.dir, 'greenboot');
  const redMarker = join(device.world.dir, 'red-ran');
  mkdirSync(join(greenboot, 'red.d'), { recursive: true });
  writeFileSync(join(greenboot, 'red.d', '50-note'), `#!/bin/sh\necho red >> ${redMarker}\n`, { mode: 0o755 });
  device.world.writeConfig({
    update: ota.updateConfig({ probation: { windowSec: 4, intervalSec: 1 } }),
    health: {
      backoffMinSec: 1,
      greenboot: { dir: greenboot },
      checks: [{ name: 'gate', kind: 'exec', command: ['/usr/bin/test', '!', '-e', broken], intervalSec: 1, failAfter: 1, severity: 'required', remediation: { action: 'reboot' } }],
    },
  });

  const { daemon } = await device.boot();
  const apply = await device.cli(['update', 'apply']);
  t.equal(apply.exitCode, 0, apply.stderr);
  t.equal((await daemon).exitCode, 0, 'the update\'s reboot');
  writeFileSync(broken, '');

  const boots: string[] = [];
  let final;
  for (let i = 0; i < 6 && final === undefined; i += 1) {
    const { daemon: d } = await device.boot();
    const settled = await until('the update to settle', async () => {
      if (d.exitCode !== null) return 'rebooted';
      const s = await device.status().catch(() => undefined);
      return s?.state === 'idle' && s.last ? s : undefined;
    }, 60_000);
    if (settled === 'rebooted') {
      boots.push((await d).all ?? '');
      continue;
    }
    final = settled;
    // Twice: the second start must find safe mode again before its first check runs (a restart or a
    // power cut in safe mode must not turn into a reboot).
    for (const start of ['first', 'restarted']) {
      const running = start === 'first' ? d : (await device.boot()).daemon;
      const report = await until('safe mode', async () => {
        const r = JSON.parse((await device.cli(['health', '--json'])).stdout) as { status: string; safeMode?: string };
        return r.safeMode ? r : undefined;
      }, 20_000);
      t.match(report, { status: 'failed', safeMode: /release 2 was rolled back \(.*health checks failed during probation: gate.*\), and this deployment has not passed its required checks since/ }, `${start}: safe mode`);
      await sleep(3000);
      t.equal(running.exitCode, null, `${start}: no reboot, outpost stays up and reachable`);
      if (start === 'first') {
        running.kill('SIGTERM');
        t.match((await running).all, /health remediation of gate: reboot safe-mode/, 'the reboot the check asks for is refused as safe mode');
        continue;
      }
      // Healthy once after the rollback: safe mode is over, and a later failure may reboot again.
      rmSync(broken);
      await until('the check passing', async () => ((JSON.parse((await device.cli(['health', '--json'])).stdout) as { status: string }).status === 'ok' ? true : undefined), 20_000);
      writeFileSync(broken, '');
      const { all } = await running;
      t.match(all, /every required check passed after the rollback: safe mode is over[^]*simulated reboot: health check gate is failing/, 'out of safe mode, the next failure reboots');
    }
  }
  t.match(final, { last: { result: 'rolledBack', version: 2, reason: /health checks failed during probation: gate/ } }, 'probation ran the required health check');
  t.match(boots.join('\n'), /health remediation of gate: reboot held/, 'no health reboot during the trial: held while the update path judges it');
  t.notMatch(boots.join('\n'), /simulated reboot: health check/, 'every reboot was the update path\'s');
  await until('red.d ran', async () => (existsSync(redMarker) ? true : undefined), 10_000);
  t.equal(readFileSync(redMarker, 'utf8'), 'red\n', 'greenboot red.d ran once after the rollback');
});
