/**
 * Which release this device should install, from verified targets: its own hardware class and
 * architecture only, newer than the installed version (anti-rollback), never one that already
 * failed its trial here, with a static delta from the booted commit when the metadata lists one.
 */
import { OutpostError } from '../errors.js';
import type { DeferredWait } from './deferral.js';
import type { Release as UpdateRelease } from './record.js';
import { deltaCustomSchema, releaseTargetsFor, type ReleaseArch, type TrustedTargets } from './tuf/index.js';

/** What the device knows about itself when choosing. */
export interface DeviceFacts {
  hardware: string;
  arch: ReleaseArch;
  bootedCommit: string | null;
  installedVersion: number;
  hasFailed: (commit: string) => Promise<boolean>;
  /** Why a release whose trial was cut short is not offered yet, and for how long (deferral.ts); null when it may be. */
  deferredWait: (commit: string) => Promise<DeferredWait | null>;
  /** Whether an operator cancelled this release (an automatic check passes it over). */
  wasCancelled: (commit: string) => Promise<boolean>;
  /** Only this target may be chosen (an offline bundle names the one it carries). */
  only?: string;
}

/**
 * The choice, or why there is nothing to install; `offerAgainInMs`: a deferred release may be
 * offered that soon, so the next check need not wait a whole interval; `inProgress`: the state of
 * an update already running for this release (an apply while one runs).
 */
export type Selection = { release: UpdateRelease; skipped?: string[]; inProgress?: string } | { release: null; reason: string; offerAgainInMs?: number };

/** The CPU architecture name releases use for the running process. */
export function runningArch(): ReleaseArch {
  if (process.arch === 'arm64') return 'aarch64';
  if (process.arch === 'x64') return 'x86_64';
  throw new OutpostError('UPDATE_REFUSED', `no releases are built for CPU architecture ${process.arch}`);
}

/** Picks the release to install; `explicitVersion` (an operator's `--version`) must still pass every rule. */
export async function selectRelease(targets: TrustedTargets, facts: DeviceFacts): Promise<Selection> {
  if (facts.only !== undefined) {
    const target = targets.get(facts.only);
    if (!target) return { release: null, reason: `${facts.only} is not in the signed metadata` };
    const [, hardware, arch] = facts.only.split('/');
    if (hardware !== facts.hardware || arch !== facts.arch) return { release: null, reason: `it is for ${hardware}/${arch}, this device is ${facts.hardware}/${facts.arch}` };
  }
  const { releases, malformed } = releaseTargetsFor(targets.list(), facts.hardware, facts.arch);
  // Signed yet unusable (a signer's mistake): never installed, always named in the answer.
  const skipped = malformed.map((problem) => `skipped a malformed signed release: ${problem}`);
  const candidates = releases.filter((r) => facts.only === undefined || r.target.name === facts.only);
  if (candidates.length === 0) return { release: null, reason: [...skipped, `no release for hardware ${facts.hardware} / ${facts.arch} in the signed metadata`].join('; ') };
  const failed: number[] = [];
  const cancelled: number[] = [];
  const waiting: string[] = [];
  let offerAgainInMs: number | undefined;
  const none = (reason: string): Selection => {
    const notes = [
      ...skipped,
      ...(failed.length > 0 ? [`release ${failed.join(', ')} failed its trial on this device and is not retried`] : []),
      ...(cancelled.length > 0 ? [`release ${cancelled.join(', ')} was cancelled by an operator (outpost update apply installs it)`] : []),
      ...waiting,
    ];
    return { release: null, reason: [...notes, reason].join('; '), ...(offerAgainInMs === undefined ? {} : { offerAgainInMs }) };
  };
  for (const candidate of candidates) {
    const c = candidate.custom;
    if (c.commit === facts.bootedCommit) return none(`release ${c.version} is already running`);
    if (c.version <= facts.installedVersion) {
      return none(`release ${c.version} is not newer than installed release ${facts.installedVersion} (anti-rollback)`);
    }
    if (await facts.hasFailed(c.commit)) {
      failed.push(c.version);
      continue;
    }
    if (await facts.wasCancelled(c.commit)) {
      cancelled.push(c.version);
      continue;
    }
    const deferred = await facts.deferredWait(c.commit);
    if (deferred !== null) {
      waiting.push(`release ${c.version} is ${deferred.reason}`);
      offerAgainInMs = Math.min(offerAgainInMs ?? Infinity, deferred.leftMs);
      continue;
    }
    const deltaRef = facts.bootedCommit === null ? undefined : c.deltas.find((d) => d.from === facts.bootedCommit);
    const deltaTarget = deltaRef ? targets.get(deltaRef.target) : undefined;
    const deltaCustom = deltaTarget ? deltaCustomSchema.safeParse(deltaTarget.custom) : undefined;
    const sha256 = deltaTarget?.hashes.sha256;
    const delta =
      deltaTarget && deltaCustom?.success && deltaCustom.data.to === c.commit && deltaCustom.data.from === facts.bootedCommit && sha256
        ? { target: deltaTarget.name, from: deltaCustom.data.from, length: deltaTarget.length, sha256, ...(targets.consistentSnapshot ? { path: targets.filePath(deltaTarget) } : {}) }
        : null;
    return { ...(skipped.length > 0 ? { skipped } : {}), release: { target: candidate.target.name, version: c.version, commit: c.commit, ref: c.ref, arch: c.arch, hardware: c.hardware, delta } };
  }
  return none('no other release is newer');
}
