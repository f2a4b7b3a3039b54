/**
 * Scenario 5, power cuts: qemu is SIGKILLed at random moments inside each phase of an update —
 * download, delta apply, right after the boot counter is written, during the deploy, right after
 * the deploy, and during the trial boot — and the same disk is booted again after each cut with no
 * help from the test. One gateway updates along a chain of good releases (2, 5, 6, ...), one cut
 * per phase per release, so each boot after a cut carries the update on to the next phase:
 *   v1 -> start update -> cut@download -> boot -> cut@apply -> boot -> cut@boot-counter -> boot
 *   -> cut@deploy -> boot -> cut@after-deploy -> boot (GRUB: trial) -> cut@trial-boot -> boot
 *   (GRUB: second trial boot) -> probation -> committed -> next release
 * Every boot must reach a good deployment (the agent answers, no emergency mode, no panic), and
 * every release must end committed. When a resumed step carries the update past a phase, the cut
 * goes to the first later phase that shows up; a boot with no trigger at all gets a cut at a
 * random moment. Counts and timings go to bench/results.
 * Cuts: 20 here, OUTPOST_LONG=1 -> 45, OUTPOST_SYSTEM_CUTS=N -> N (6 per release, 9 releases: at most 54).
 */
import t from 'tap';
import { bootedRelease, recordResult, scenario, settled, startUpdate } from './lib/scenario.js';
import type { Vm } from './lib/vm.js';

/** A step of the update machine starting (fresh or resumed after a cut): outpost logs `update step`. */
const step = (state: string) => new RegExp(`"state":"${state}"[^\n]*"msg":"update step"`);

/**
 * A phase: the serial line that says outpost entered it, and the random delay after it. `inOrder`:
 * only when it is the very next phase (its trigger also shows up in boots of other phases).
 */
const phases: readonly { name: string; trigger: RegExp; minDelayMs: number; maxDelayMs: number; inOrder?: boolean }[] = [
  { name: 'download', trigger: step('downloading'), minDelayMs: 0, maxDelayMs: 1500 },
  { name: 'apply', trigger: step('downloaded'), minDelayMs: 0, maxDelayMs: 10_000 },
  { name: 'boot-counter', trigger: /"msg":"trial armed"/, minDelayMs: 0, maxDelayMs: 300 },
  { name: 'deploy', trigger: /"msg":"trial armed"/, minDelayMs: 1000, maxDelayMs: 15_000 },
  { name: 'after-deploy', trigger: /"to":"deployed"|"state":"deployed"[^\n]*"msg":"update step"/, minDelayMs: 0, maxDelayMs: 1000 },
  // GRUB wrote the decremented counter and boots the new release: cut anywhere in that trial boot.
  // (A boot after a cut in boot-counter or deploy prints the same line for the old release.)
  { name: 'trial-boot', trigger: /RIG-GRUB boot_counter=1 default=0/, minDelayMs: 0, maxDelayMs: 60_000, inOrder: true },
];
/** The update finished in this boot: no later phase will show up. */
const finished = /"to":"idle"/;

/**
 * Waits in the serial log from `since` for phase `from` or any later one (a resumed step may have
 * carried the update past a phase); resolves to the index of the first that shows up, 'done' when
 * the update finished first, or 'timeout'.
 */
async function nextPhase(vm: Vm, since: number, from: number, timeoutMs: number): Promise<number | 'done' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const log = await vm.serial(since);
    const at = (re: RegExp) => log.search(re);
    let best: { index: number; pos: number } | undefined;
    for (let i = from; i < phases.length; i++) {
      const phase = phases[i];
      if (phase === undefined || (phase.inOrder === true && i !== from)) continue;
      const pos = at(phase.trigger);
      if (pos >= 0 && (best === undefined || pos < best.pos)) best = { index: i, pos };
    }
    const done = at(finished);
    if (best !== undefined && (done < 0 || best.pos < done)) return best.index;
    if (done >= 0) return 'done';
    await new Promise((r) => setTimeout(r, 250));
  }
  return 'timeout';
}

/** v1 and the good releases after it, each with a delta from the one before (image: 2, then 5..12). */
const chain = [1, 2, 5, 6, 7, 8, 9, 10, 11, 12];
const totalCuts = Number(process.env.OUTPOST_SYSTEM_CUTS ?? (process.env.OUTPOST_LONG === '1' ? 45 : 20));

interface Cut {
  release: number;
  phase: string;
  hit: boolean;
  delayMs: number;
  stateAtCut: string | null;
  bootedAfter: number | null;
  bootBackMs: number;
  bricked: boolean;
}

const random = (min: number, max: number) => Math.round(min + Math.random() * (max - min));

t.test(`power cuts during updates: ${totalCuts} cuts, zero bricked`, async (t) => {
  const s = await scenario(t, '05-powercut');
  const cuts: Cut[] = [];
  const releases: { version: number; ms: number; cuts: number }[] = [];
  await s.vm.start();
  for (let i = 1; i < chain.length && cuts.length < totalCuts; i++) {
    const previous = chain[i - 1] ?? 1;
    const version = chain[i] ?? 2;
    const t0 = performance.now();
    await s.world.release(version, [previous]);
    let since = await s.vm.mark();
    await startUpdate(s.vm);
    let cutsHere = 0;
    for (let next = 0; next < phases.length && cuts.length < totalCuts; ) {
      const found = await nextPhase(s.vm, since, next, 150_000);
      if (found === 'done') break; // the update finished: on to convergence and the next release
      const hit = found !== 'timeout';
      const phase = phases[hit ? found : next];
      if (phase === undefined) break;
      next = (hit ? found : next) + 1;
      const delayMs = hit ? random(phase.minDelayMs, phase.maxDelayMs) : random(0, 20_000);
      await new Promise((r) => setTimeout(r, delayMs));
      const states = [...(await s.vm.serial(since)).matchAll(/"to":"(\w+)"/g)].map((m) => m[1] ?? '');
      await s.vm.powerCut();
      const tb = performance.now();
      since = await s.vm.mark();
      let bricked = false;
      let bootedAfter: number | null = null;
      try {
        await s.vm.start({ timeoutMs: 400_000 });
        bootedAfter = await bootedRelease(s.vm);
      } catch {
        bricked = true;
      }
      if (/emergency mode|Couldn.t find specified OSTree root|Kernel panic/.test(await s.vm.serial(since))) bricked = true;
      if (bootedAfter !== previous && bootedAfter !== version) bricked = true;
      cuts.push({ release: version, phase: phase.name, hit, delayMs, stateAtCut: states.at(-1) ?? null, bootedAfter, bootBackMs: Math.round(performance.now() - tb), bricked });
      cutsHere += 1;
      t.notOk(bricked, `release ${version}: cut in ${phase.name}${hit ? '' : ' (no trigger: random)'} after ${delayMs} ms (last transition this boot: ${states.at(-1) ?? 'none, resumed'}) -> booted release ${bootedAfter}`);
      if (bricked) break;
    }
    if (cuts.some((c) => c.bricked)) break;
    // No help from the test: outpost resumes (or re-checks) by itself and must commit the release.
    const st = await settled(s.vm, 900_000);
    t.equal(await bootedRelease(s.vm), version, `converged: release ${version} booted`);
    t.match(st.last, { result: 'committed', version }, `release ${version} committed`);
    releases.push({ version, ms: Math.round(performance.now() - t0), cuts: cutsHere });
  }
  const bricked = cuts.filter((c) => c.bricked).length;
  t.equal(cuts.length, totalCuts, `${totalCuts} cuts made`);
  t.equal(bricked, 0, 'zero bricked devices');
  await recordResult(process.env.OUTPOST_LONG === '1' ? 'powercutLong' : 'powercut', {
    cuts: cuts.length,
    bricked,
    recovered: cuts.length - bricked,
    releasesConverged: releases.length,
    byPhase: Object.fromEntries(phases.map((p) => [p.name, cuts.filter((c) => c.phase === p.name).length])),
    triggerHits: cuts.filter((c) => c.hit).length,
    meanBootBackMs: Math.round(cuts.reduce((a, c) => a + c.bootBackMs, 0) / Math.max(1, cuts.length)),
    meanReleaseMs: Math.round(releases.reduce((a, r) => a + r.ms, 0) / Math.max(1, releases.length)),
    releases,
    cutsDetail: cuts,
  });
});
