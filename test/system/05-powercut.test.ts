/**
 * Scenario 5, power cuts: qemu is SIGKILLed at random moments inside each phase of an update
 * (download, delta apply, deploy — which starts by writing the boot counter — and right after the
 * deploy), booting the same disk again after each cut with no help from the test. Every boot must
 * reach a good deployment (the agent answers, no emergency mode), and every series must end with
 * release 2 committed. Each series chains one cut per phase on a fresh overlay:
 *   boot v1 -> cut@downloading -> boot -> cut@downloaded -> boot -> cut@applying -> boot
 *   -> cut@deployed -> boot (GRUB: trial of v2) -> probation -> committed
 * A phase whose trigger line does not show up within its boot (the resumed step just carries
 * on) gets a cut at a random moment instead. Counts and timings go to bench/results/system.json.
 * Cuts: 20 here, OUTPOST_LONG=1 -> 60, OUTPOST_SYSTEM_CUTS=N -> N.
 */
import t from 'tap';
import { bootedRelease, recordResult, scenario, settled } from './lib/scenario.js';

/** A phase: the serial line that says outpost entered it, and the longest random delay after it. */
const phases: readonly { name: string; trigger: RegExp; maxDelayMs: number }[] = [
  { name: 'downloading', trigger: /"to":"downloading"|installing release 2|"event":"begin"/, maxDelayMs: 1500 },
  { name: 'apply', trigger: /"to":"downloaded"/, maxDelayMs: 3000 },
  { name: 'deploy', trigger: /"to":"applying"/, maxDelayMs: 20_000 },
  { name: 'after-deploy', trigger: /"to":"deployed"|"msg":"deployed"/, maxDelayMs: 1000 },
];
// OUTPOST_SYSTEM_CUTS overrides the count (e.g. a quick local check of the rig itself).
const totalCuts = Number(process.env.OUTPOST_SYSTEM_CUTS ?? (process.env.OUTPOST_LONG === '1' ? 60 : 20));

interface Cut {
  series: number;
  phase: string;
  hit: boolean;
  delayMs: number;
  stateAtCut: string | null;
  bootBackMs: number;
  bricked: boolean;
}

t.test(`power cuts during updates: ${totalCuts} cuts, zero bricked`, async (t) => {
  const s = await scenario(t, '05-powercut');
  await s.world.release(2, [1]);
  const cuts: Cut[] = [];
  const series: { ms: number; result: string }[] = [];
  for (let n = 1; cuts.length < totalCuts; n++) {
    const t0 = performance.now();
    await s.vm.stop();
    await s.vm.create(); // fresh v1 disk for every series
    await s.vm.start();
    for (const phase of phases) {
      if (cuts.length >= totalCuts) break;
      // The boot may have passed the trigger while the test waited for its agent: search the whole boot.
      const since = s.vm.bootMark;
      const hit = await s.vm.waitSerial(phase.trigger, { since, timeoutMs: 90_000 }).then(() => true, () => false);
      const delayMs = Math.round(Math.random() * (hit ? phase.maxDelayMs : 20_000));
      await new Promise((r) => setTimeout(r, delayMs));
      const log = await s.vm.serial(since);
      const states = [...log.matchAll(/"to":"(\w+)"/g)].map((m) => m[1] ?? '');
      await s.vm.powerCut();
      const tb = performance.now();
      const bootMark = await s.vm.mark();
      let bricked = false;
      try {
        await s.vm.start({ timeoutMs: 400_000 });
      } catch {
        bricked = true;
      }
      const back = await s.vm.serial(bootMark);
      if (/emergency mode|Couldn.t find specified OSTree root|Kernel panic/.test(back)) bricked = true;
      cuts.push({ series: n, phase: phase.name, hit, delayMs, stateAtCut: states.at(-1) ?? null, bootBackMs: Math.round(performance.now() - tb), bricked });
      t.notOk(bricked, `series ${n}: cut in ${phase.name}${hit ? '' : ' (random)'} after ${delayMs} ms -> booted a good deployment`);
      if (bricked) break;
    }
    if (cuts.some((c) => c.bricked)) break;
    // No help from the test: outpost resumes (or re-checks) by itself and must commit release 2.
    const st = await settled(s.vm, 900_000);
    const release = await bootedRelease(s.vm);
    t.equal(release, 2, `series ${n}: converged to release 2`);
    t.match(st.last, { result: 'committed', version: 2 }, `series ${n}: committed`);
    series.push({ ms: Math.round(performance.now() - t0), result: `${String((st.last as { result?: string } | null)?.result)} v${release}` });
  }
  const bricked = cuts.filter((c) => c.bricked).length;
  t.equal(bricked, 0, 'zero bricked devices');
  await recordResult(process.env.OUTPOST_LONG === '1' ? 'powercutLong' : 'powercut', {
    cuts: cuts.length,
    bricked,
    recovered: cuts.length - bricked,
    seriesConverged: series.length,
    byPhase: Object.fromEntries(phases.map((p) => [p.name, cuts.filter((c) => c.phase === p.name).length])),
    triggerHits: cuts.filter((c) => c.hit).length,
    meanBootBackMs: Math.round(cuts.reduce((a, c) => a + c.bootBackMs, 0) / Math.max(1, cuts.length)),
    meanSeriesMs: Math.round(series.reduce((a, c) => a + c.ms, 0) / Math.max(1, series.length)),
    cutsDetail: cuts,
  });
});
