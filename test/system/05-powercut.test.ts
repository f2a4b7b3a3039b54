/**
 * Scenario 5, power cuts: qemu is SIGKILLed at random moments inside each phase of an update and
 * the same disk is booted again after each cut with no help from the test. One gateway updates
 * along a chain (2, the bad 3 and 4, then 5, 6, ...), one cut per phase per release, so each boot after
 * a cut carries the update on to the next phase:
 * - a good release: download, delta apply, right after the boot counter is written, inside the
 *   deploy, right after ostree's boot-config swap (delay measured from libostree's `bootconfig
 *   swap: yes` line: the window that bricked gateways, ostree issue 3392), after the deploy, and
 *   in the trial boot; it must end committed;
 * - release 3 (fails its health check): after its deploy's swap, in the rollback step, right
 *   after the rollback redeploy's swap, and right after the undeploy's swap back on release 2;
 *   it must end rolled back;
 * - release 4 (PID 1 exits: GRUB falls back by itself): after its deploy's swap, and right after
 *   the swap of outpost's clean-up back on release 2 (undeploying the dead deployment);
 * - double cuts (after the deploy's and the rollback's swap): a second cut early in the next boot.
 * Every boot must reach a good deployment (the agent answers, no emergency mode, no panic). When
 * a resumed step carries the update past a phase, the cut goes to the first later phase that
 * shows up; a boot with no trigger at all gets a cut at a random moment. Counts and timings go to
 * bench/results.
 * The rig's TPM rides along (it was scenario 7, with boots of its own): an NV index of the swtpm
 * TPM written once must read back after the series, whose cuts SIGKILL qemu and stop swtpm (both
 * started again on the same state), and its reboots: the ground the trust work will stand on.
 * Cuts: 20 here, OUTPOST_LONG=1 -> 45, OUTPOST_SYSTEM_CUTS=N -> N; OUTPOST_SYSTEM_PHASES=a,b
 * restricts the phases (e.g. deploy-swap,rollback-swap).
 */
import t, { type Test } from 'tap';
import { bootedRelease, recordResult, scenario, settled, startUpdate, until, updateStatus } from './lib/scenario.js';
import type { Vm } from './lib/vm.js';

/** A step of the update machine starting (fresh or resumed after a cut): outpost logs `update step`. */
const step = (state: string) => new RegExp(`"state":"${state}"[^\n]*"msg":"update step"`);
/**
 * libostree's journal line once it swapped the boot config (deploy, redeploy, undeploy). From here
 * until the swap is where GRUB reads, a cut bricked the gateway (ostree issue 3392): the window
 * is measured from this line, not from an earlier one.
 */
const swapped = /bootconfig swap: yes/;

/**
 * A phase: the serial line that opens its window and the random delay after it. `inOrder`: only
 * when it is the very next phase (its trigger also shows up in boots of other phases). `double`:
 * after the cut, cut again early in the next boot (kernel, initramfs or early userspace).
 */
interface Phase { name: string; trigger: RegExp; minDelayMs: number; maxDelayMs: number; inOrder?: boolean; double?: boolean }

/** A good release, v1 -> v2 and along the chain: it must end committed. */
const forward: readonly Phase[] = [
  { name: 'download', trigger: step('downloading'), minDelayMs: 0, maxDelayMs: 1500 },
  { name: 'apply', trigger: step('downloaded'), minDelayMs: 0, maxDelayMs: 10_000 },
  { name: 'boot-counter', trigger: /"msg":"trial armed"/, minDelayMs: 0, maxDelayMs: 300 },
  { name: 'deploy', trigger: /"msg":"trial armed"/, minDelayMs: 1000, maxDelayMs: 15_000 },
  { name: 'deploy-swap', trigger: swapped, minDelayMs: 0, maxDelayMs: 4000, double: true },
  { name: 'after-deploy', trigger: /"to":"deployed"|"state":"deployed"[^\n]*"msg":"update step"/, minDelayMs: 0, maxDelayMs: 1000 },
  // GRUB wrote the decremented counter and boots the new release: cut anywhere in that trial boot.
  // (A boot after a cut in boot-counter or deploy prints the same line for the old release.)
  { name: 'trial-boot', trigger: /RIG-GRUB boot_counter=1 default=0/, minDelayMs: 0, maxDelayMs: 60_000, inOrder: true },
];
/** Release 3 fails its health check: cuts in its deploy, its rollback and the clean-up after it; it must end rolled back. */
const rollback: readonly Phase[] = [
  { name: 'deploy-swap', trigger: swapped, minDelayMs: 0, maxDelayMs: 4000 },
  { name: 'rollback', trigger: step('rollingBack'), minDelayMs: 0, maxDelayMs: 8000 },
  // The redeploy of the previous commit that makes it the default again.
  { name: 'rollback-swap', trigger: swapped, minDelayMs: 0, maxDelayMs: 4000, inOrder: true, double: true },
  // Back on the previous release: the failed deployment is undeployed (another swap).
  { name: 'restore-swap', trigger: swapped, minDelayMs: 0, maxDelayMs: 3000, inOrder: true },
];
/** Release 4 never reaches userspace: GRUB falls back on its own; cut in outpost's clean-up after it. */
const neverBoots: readonly Phase[] = [
  { name: 'deploy-swap', trigger: swapped, minDelayMs: 0, maxDelayMs: 4000 },
  // Back on release 2 after GRUB's fallback, outpost undeploys the dead deployment (a swap).
  { name: 'fallback-swap', trigger: swapped, minDelayMs: 0, maxDelayMs: 3000, inOrder: true },
];
/** OUTPOST_SYSTEM_PHASES=a,b: only those phases (a targeted run, e.g. the swap windows). */
const only = process.env.OUTPOST_SYSTEM_PHASES?.split(',');
const chosen = (list: readonly Phase[]) => list.filter((p) => only === undefined || only.includes(p.name));
/** The update finished in this boot: no later phase will show up. */
const finished = /"to":"idle"/;

/**
 * Waits in the serial log from `since` for phase `from` or any later one (a resumed step may have
 * carried the update past a phase); resolves to the index of the first that shows up, 'done' when
 * the update finished first, or 'timeout'.
 */
async function nextPhase(vm: Vm, phases: readonly Phase[], since: number, from: number, timeoutMs: number): Promise<number | 'done' | 'timeout'> {
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

/** v1 and the releases after it, each with a delta from the running one: 2, the bad 3 and 4 (back to 2), then 5..12. */
const chain = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
/** What each release must end as, and the phases cut in it. */
const plan = (version: number): { phases: readonly Phase[]; result: 'committed' | 'rolledBack'; panics: boolean } =>
  version === 3
    ? { phases: rollback, result: 'rolledBack', panics: false }
    : version === 4
      ? { phases: neverBoots, result: 'rolledBack', panics: true }
      : { phases: forward, result: 'committed', panics: false };
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
  /** A second cut early in the boot after this one. */
  double: boolean;
}

/** A TPM NV index the rig writes once and reads after the series. */
const tpmNv = '0x1500016';
const tpmRead = `TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_nvread ${tpmNv} -C o -s 8`;

/** Defines and writes the NV index; resolves to how long that took. */
async function writeTpmNv(vm: Vm): Promise<number> {
  const t0 = performance.now();
  await vm.sh(`export TPM2TOOLS_TCTI=device:/dev/tpmrm0
tpm2_getrandom 8 --hex >/dev/null
tpm2_nvdefine ${tpmNv} -C o -s 8 -a "ownerread|ownerwrite"
printf outpost1 > /run/nv && tpm2_nvwrite ${tpmNv} -C o -i /run/nv`);
  return Math.round(performance.now() - t0);
}

const random = (min: number, max: number) => Math.round(min + Math.random() * (max - min));

/** Boots the disk after a cut and tells whether it came back to `allowed`; never helps it. */
async function bootBack(vm: Vm, since: number, allowed: number[], panicExpected: boolean): Promise<{ bootedAfter: number | null; bricked: boolean }> {
  let bricked = false;
  let bootedAfter: number | null = null;
  try {
    await vm.start({ timeoutMs: 400_000 });
    bootedAfter = await bootedRelease(vm);
  } catch {
    bricked = true;
  }
  // Emergency mode now reboots by itself (rd.emergency=reboot, RIG-EMERGENCY): still a brick here.
  // A panic is one only where no release is meant to panic (release 4's PID 1 exits on purpose).
  const serial = await vm.serial(since);
  if (/emergency mode|Couldn.t find specified OSTree root|RIG-EMERGENCY|Boot has failed/.test(serial)) bricked = true;
  if (!panicExpected && /Kernel panic/.test(serial)) bricked = true;
  if (bootedAfter === null || !allowed.includes(bootedAfter)) bricked = true;
  return { bootedAfter, bricked };
}

/**
 * Starts the update to `version`; resolves to the serial mark from which its phases show up. A
 * release the device deferred (4: a panic in the trial boots leaves no evidence against it, just
 * as power loss would not) is offered again by the device itself when its backoff ends. When that
 * came before `version` was signed, the update under way is that release's: it plays out uncut
 * (and ends rolled back again, deferred longer), then `version` starts. Cutting it instead would
 * count its phases as this release's.
 */
async function startUpdateTo(t: Test, vm: Vm, version: number): Promise<number> {
  for (;;) {
    const since = await vm.mark();
    // What apply answers names the release it installs, or the one already under way.
    const answer = await startUpdate(vm);
    const named = /release (\d+) \((static delta|full pull)\)/.exec(answer)?.[1];
    // A status costs a node start in the guest, slow while ostree applies a delta: a long timeout.
    const underWay = named !== undefined ? Number(named) : (JSON.parse(await vm.sh('outpost update status --json', 120_000)) as { release: { version: number } | null }).release?.version;
    if (underWay === undefined || underWay === version) return since;
    t.comment(`release ${underWay} was offered again by the device itself before release ${version} was signed: it runs uncut first`);
    await until(`release ${underWay} settled`, async () => {
      const s = await updateStatus(vm);
      return s.state === 'idle' ? s : undefined;
    }, 1_200_000, 5000);
  }
}

t.test(`power cuts during updates and a rollback: ${totalCuts} cuts, zero bricked`, async (t) => {
  const s = await scenario(t, '05-powercut');
  const cuts: Cut[] = [];
  const releases: { version: number; ms: number; cuts: number; result: string; deferred: boolean }[] = [];
  await s.vm.start();
  // The layout that closes ostree's swap window: GRUB reads /boot without replaying a journal.
  t.notMatch(await s.vm.sh('tune2fs -l "$(findmnt -no SOURCE /boot)" | grep -i features'), /has_journal/, '/boot has no journal');
  t.match(await s.vm.sh('ls /dev/tpmrm0'), /tpmrm0/, 'rig: /dev/tpmrm0 exists');
  const tpmWriteMs = await writeTpmNv(s.vm);
  t.equal(await s.vm.sh(tpmRead), 'outpost1', 'rig: TPM NV index written and read back');
  let running = 1;
  for (let i = 1; i < chain.length && cuts.length < totalCuts; i++) {
    const version = chain[i] ?? 2;
    const previous = running;
    const phases = chosen(plan(version).phases);
    const t0 = performance.now();
    await s.world.release(version, [previous]);
    let since = await startUpdateTo(t, s.vm, version);
    let cutsHere = 0;
    for (let next = 0; next < phases.length && cuts.length < totalCuts; ) {
      const found = await nextPhase(s.vm, phases, since, next, 150_000);
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
      const double = hit && phase.double === true && cuts.length + 1 < totalCuts;
      if (double) {
        // The second cut lands early in the next boot: GRUB's counter, the kernel, the initramfs.
        await s.vm.start({ waitReady: false });
        await s.vm.waitSerial(/RIG-GRUB/, { since, timeoutMs: 120_000 });
        await new Promise((r) => setTimeout(r, random(1000, 15_000)));
        await s.vm.powerCut();
        since = await s.vm.mark();
      }
      const { bootedAfter, bricked } = await bootBack(s.vm, since, [previous, version], plan(version).panics);
      const cut: Cut = { release: version, phase: phase.name, hit, delayMs, stateAtCut: states.at(-1) ?? null, bootedAfter, bootBackMs: Math.round(performance.now() - tb), bricked, double };
      cuts.push(cut);
      if (double) cuts.push({ ...cut, phase: `${phase.name}+early-boot` });
      cutsHere += double ? 2 : 1;
      t.notOk(bricked, `release ${version}: cut in ${phase.name}${hit ? '' : ' (no trigger: random)'} after ${delayMs} ms${double ? ', then again early in the next boot' : ''} (last transition: ${states.at(-1) ?? 'none, resumed'}) -> booted release ${bootedAfter}`);
      if (bricked) break;
    }
    if (cuts.some((c) => c.bricked)) break;
    // No help from the test: outpost resumes (or re-checks) by itself and must finish the release.
    // Cuts in both trial boots of a good release defer it (power loss is not held against it): it
    // gets its next trial when the backoff (2 min on the rig) ends, with no apply from the test.
    const expected = plan(version).result === 'rolledBack' ? { result: 'rolledBack', booted: previous } : { result: 'committed', booted: version };
    let deferred = false;
    const st = await until(`release ${version} ${expected.result}`, async () => {
      const status = await updateStatus(s.vm);
      const last = status.last as { result?: string; version?: number; reason?: string } | null;
      if (status.state !== 'idle' || last?.version !== version) return undefined;
      if (last.result === expected.result) return status;
      if (/offered again in/.test(String(last.reason))) deferred = true;
      return undefined;
    }, 1_200_000, 2000).catch(() => settled(s.vm, 60_000));
    if (deferred) t.comment(`release ${version} was deferred after cuts in its trial boots and offered again by itself`);
    t.equal(await bootedRelease(s.vm), expected.booted, `converged: release ${expected.booted} booted`);
    t.match(st.last, { result: expected.result, version }, `release ${version} ${expected.result}`);
    running = expected.booted;
    releases.push({ version, ms: Math.round(performance.now() - t0), cuts: cutsHere, result: String((st.last as { result?: string } | null)?.result), deferred });
  }
  const bricked = cuts.filter((c) => c.bricked).length;
  t.equal(cuts.length, totalCuts, `${totalCuts} cuts made`);
  t.equal(bricked, 0, 'zero bricked devices');
  const phaseNames = [...new Set([...forward, ...rollback, ...neverBoots].map((p) => p.name))];
  await recordResult(process.env.OUTPOST_LONG === '1' ? 'powercutLong' : 'powercut', {
    cuts: cuts.length,
    bricked,
    recovered: cuts.length - bricked,
    releasesConverged: releases.length,
    byPhase: Object.fromEntries(phaseNames.map((n) => [n, cuts.filter((c) => c.phase === n).length])),
    doubleCuts: cuts.filter((c) => c.phase.endsWith('+early-boot')).length,
    triggerHits: cuts.filter((c) => c.hit).length,
    meanBootBackMs: Math.round(cuts.reduce((a, c) => a + c.bootBackMs, 0) / Math.max(1, cuts.length)),
    meanReleaseMs: Math.round(releases.reduce((a, r) => a + r.ms, 0) / Math.max(1, releases.length)),
    releases,
    cutsDetail: cuts,
  });
  // After a brick there is no guest to ask; the brick is the failure that matters.
  if (bricked > 0) return;
  t.equal(await s.vm.sh(tpmRead), 'outpost1', `rig: the TPM NV index survived ${cuts.length} cuts and the reboots`);
  await recordResult('tpm', { defineWriteMs: tpmWriteMs, survivedCuts: cuts.length });
});
