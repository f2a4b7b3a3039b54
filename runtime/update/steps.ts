/**
 * What each update state does. Every step is idempotent (machine.ts re-runs the current step
 * after a crash) and returns an event; none picks the next state.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isOutpostError, OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { Boot, BootVersion } from './boot/index.js';
import type { Downloader, DownloadProgress } from './download.js';
import type { StepResult, Steps } from './machine.js';
import type { Ostree } from './ostree.js';
import type { ProbationResult } from './probation.js';
import type { Release, UpdateRecord } from './record.js';
import { verifyFile } from './verify-file.js';

/** Where release files come from: the update server, or an offline bundle's directory. */
export interface ReleaseSources {
  /** URL of a TUF target file (a delta). */
  targetUrl(targetName: string): string;
  /** HTTP archive repo for the full-pull fallback; undefined when there is none. */
  ostreeUrl?: string;
}

/** The ports the steps drive. */
export interface StepPorts {
  ostree: Ostree;
  boot: Boot;
  downloader: Downloader;
  sources: ReleaseSources;
  /** Runs probation until `deadlineMs` on CLOCK_MONOTONIC. */
  probation: (deadlineMs: number) => Promise<ProbationResult>;
  /** CLOCK_MONOTONIC ms at which probation of `commit` began in boot `bootId` (probation.ts). */
  probationStartMs: (commit: string, bootId: string) => Promise<number>;
  probationWindowMs: number;
  downloadDir: string;
  applyHeadroomBytes: number;
  /** Whether a bandwidth cap is configured: a full pull cannot honour it and says so. */
  bandwidthCapped: boolean;
  /** Free bytes on the file system holding a path (statfs). */
  freeBytes: (path: string) => Promise<number>;
  /** Whole-repo `ostree fsck` after apply (see the config field). */
  fsckBeforeDeploy: boolean;
  /**
   * Marker the independent trial guard (systemd/outpost-trial-guard) writes before it reboots an
   * unblessed trial: a fallback after it is a failed trial, not power loss.
   */
  trialGuardMarker: string;
  log: Logger;
  /** The wall clock, for reports only. */
  now: () => Date;
  onProgress: (progress: DownloadProgress & { phase: string }) => void;
  /** Aborted by `outpost update cancel`: the download stops at once. */
  cancelSignal: () => AbortSignal;
}

/** Ref that keeps a staged commit from being pruned between apply and deploy. */
export const stagedRef = 'outpost/staged';

function requireRelease(record: UpdateRecord): Release {
  if (!record.release) throw new OutpostError('INTERNAL', `update record in ${record.state} has no release`);
  return record.release;
}

/** The delta file's local path: in the bundle, or in the download dir. */
function deltaPath(ports: StepPorts, release: Release): string | undefined {
  if (!release.delta) return undefined;
  const name = release.delta.target.replace(/[^A-Za-z0-9._-]/g, '_');
  return release.bundleDir ? join(release.bundleDir, 'targets', release.delta.target) : join(ports.downloadDir, name);
}

function outcome(record: UpdateRecord, result: 'committed' | 'rolledBack' | 'failed', now: Date): UpdateRecord['last'] {
  const release = requireRelease(record);
  return { result, version: release.version, commit: release.commit, reason: record.reason, at: now.toISOString() };
}

/** Builds the step table for the machine. */
export function createSteps(ports: StepPorts): Steps {
  const { ostree, boot, log } = ports;

  const download = async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    if (!release.delta || (await ostree.hasCommit(release.commit))) return { event: 'downloaded' };
    if (release.bundleDir) {
      // A file from a USB stick is as untrusted as one from the network: check it against TUF.
      await verifyFile(deltaPath(ports, release) ?? '', release.delta.length, release.delta.sha256);
      return { event: 'downloaded' };
    }
    const path = deltaPath(ports, release) ?? '';
    await ports.downloader.download({
      url: ports.sources.targetUrl(release.delta.path ?? release.delta.target),
      dir: ports.downloadDir,
      name: path.slice(ports.downloadDir.length + 1),
      expectedLength: release.delta.length,
      sha256: release.delta.sha256,
      applyHeadroomBytes: ports.applyHeadroomBytes,
      onProgress: (p) => ports.onProgress({ ...p, phase: 'downloading' }),
      signal: ports.cancelSignal(),
    });
    return { event: 'downloaded', patch: { progress: { phase: 'downloaded', bytes: release.delta.length, total: release.delta.length, rateBps: 0 } } };
  };

  const apply = async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    // An offline bundle carries either a delta or an archive repo holding the commit.
    const pullUrl = release.bundleDir ? `file://${join(release.bundleDir, 'repo')}` : ports.sources.ostreeUrl;
    // A full pull's size is not in the metadata: at least the apply headroom must be free, as
    // for a delta, so the fallback cannot fill the disk the running system needs.
    const pull = async (url: string): Promise<void> => {
      const free = await ports.freeBytes(ostree.repo);
      if (free < ports.applyHeadroomBytes) {
        throw new OutpostError('DISK_SPACE', `not enough space in ${ostree.repo} for a full pull of release ${release.version}: ${free} bytes free, update.applyHeadroomBytes asks for ${ports.applyHeadroomBytes}`);
      }
      if (ports.bandwidthCapped && !release.bundleDir) log.warn('the full pull is not bandwidth-capped: ostree pull has no rate limit (update.bandwidthBytesPerSec covers delta downloads only)', { version: release.version });
      await ostree.pull(url, release.commit);
    };
    if (!(await ostree.hasCommit(release.commit))) {
      const file = deltaPath(ports, release);
      if (file && release.delta) {
        try {
          await ostree.applyStaticDelta(file, { expectFrom: release.delta.from, expectCommit: release.commit });
        } catch (err) {
          if (!pullUrl || release.bundleDir) throw err;
          log.warn('static delta failed to apply; falling back to a full pull', { err });
          await pull(pullUrl);
        }
      } else if (pullUrl) {
        await pull(pullUrl);
      } else {
        throw new OutpostError('UPDATE_NO_SOURCE', `release ${release.version}: no delta from the booted commit and no OSTree repository to pull from`);
      }
    }
    await ostree.verifyCommit(release.commit, { fsck: ports.fsckBeforeDeploy });
    await ostree.refUpdate(stagedRef, release.commit);
    // A cancel that came while the commit was staged (nothing stops ostree mid-apply) holds the
    // update here, before the deploy: the step's error keeps the state for the cancel to end.
    ports.cancelSignal().throwIfAborted();
    return { event: 'applied', patch: { progress: null } };
  };

  /**
   * The booted commit, where a verdict hangs on it: not knowing is no evidence of a fallback, so
   * it is a transient error (the step runs again) rather than a failed trial.
   */
  const knownBootedCommit = async (): Promise<string> => {
    const booted = await boot.bootedCommit();
    if (booted === null) throw new OutpostError('UPDATE_BOOTED_UNKNOWN', 'cannot tell which deployment is booted; the trial is judged once it can', { transient: true });
    return booted;
  };

  /** Arms the counter for boots of `release` from the boot config `bootVersion`. */
  const armTrial = async (release: Release, bootVersion: BootVersion): Promise<void> => {
    await boot.markTrial({ commit: release.commit, bootVersion });
    log.info('trial armed', { version: release.version, bootVersion });
  };

  const deploy = async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    const isDefault = async () => (await ostree.deployments()).find((d) => d.isDefault)?.commit === release.commit;
    if (await isDefault()) {
      // Resumed after the deploy finished (or failed after the swap): make sure the counter is
      // armed for the boot config that boots the release now, as observed, not as assumed.
      if (!(await boot.trialState()).armed) await armTrial(release, await ostree.bootVersion());
      return { event: 'deployed' };
    }
    // A marker left by an earlier trial must not condemn this one.
    await rm(ports.trialGuardMarker, { force: true });
    // Armed before the deploy, for the boot config the deploy writes: the bootloader counts only
    // boots of that config, so the trial is counted from the moment the swap reaches the disk,
    // and a cut before that counts nothing (the old default keeps booting as it always did).
    const expected: BootVersion = (await ostree.bootVersion()) === 0 ? 1 : 0;
    await armTrial(release, expected);
    try {
      await ostree.deploy(release.commit);
    } catch (err) {
      // ostree can fail after the swap (prune, the /boot flush, the default check): decide from
      // the deployments as they are now. Unreadable: leave the counter armed; it counts nothing
      // unless the new boot config is the one GRUB reads.
      if (await isDefault()) {
        log.warn('the deploy reported an error, but the release is the default deployment now; its trial stays armed', { err });
        await ostree.flushBoot();
      } else {
        await boot.markGood().catch((e: unknown) => log.error('could not disarm the trial counter', { err: e }));
        // A permanent failure ends the attempt without the finish step: drop what it staged (the
        // pin, a half-written deployment directory, objects only it used). A transient one is
        // retried and needs all of it.
        if (!(isOutpostError(err) && err.transient)) {
          await ostree.refUpdate(stagedRef, null).catch((e: unknown) => log.warn('could not drop the staged ref', { err: e }));
          await ostree.cleanup().catch((e: unknown) => log.warn('ostree admin cleanup failed after the failed deploy', { err: e }));
        }
        throw err;
      }
    }
    const observed = await ostree.bootVersion();
    if (observed !== expected) {
      log.warn('the deploy wrote another boot config than expected; re-arming for it', { expected, observed });
      await armTrial(release, observed);
    }
    return { event: 'deployed' };
  };

  const requestReboot = async (record: UpdateRecord): Promise<StepResult> => {
    // Power lost between the deploy and the reboot: the bootloader already started the trial
    // (this boot); rebooting again would spend a second of the release's few trial boots.
    const alreadyOnTrial = (await boot.bootedCommit()) === requireRelease(record).commit;
    return { event: 'rebootRequested', patch: { rebootFromBootId: alreadyOnTrial ? null : await boot.bootId() } };
  };

  const rebooting = async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    const bootId = await boot.bootId();
    if (bootId === record.rebootFromBootId) {
      await boot.reboot(`update to release ${release.version}`);
      return { event: 'rebootRequested', pause: true };
    }
    const booted = await knownBootedCommit();
    if (booted === release.commit) {
      // A later trial boot that follows a watchdog reset: an earlier one hung before outpost got
      // to probation. (After the first trial boot the reset was the old system's shutdown.)
      if (((await boot.trialState()).bootsUsed ?? 1) > 1 && (await boot.resetCause()) === 'watchdog') {
        const reason = `the hardware watchdog reset the system during an earlier trial boot of release ${release.version}`;
        return { event: 'trialReset', patch: { reason }, failedCommit: { commit: release.commit, reason } };
      }
      return { event: 'bootedNew', patch: { probationBootId: bootId, probationStartedAt: ports.now().toISOString() } };
    }
    const dead = (await ostree.deployments()).filter((d) => !d.booted && d.commit === release.commit).sort((a, b) => b.index - a.index);
    // Clean up after the bootloader (found on the booted QEMU gateway): the dead deployment is
    // still the default and GRUB's spent counter (-1) still selects the fallback entry. Left so,
    // the next update's deploy keeps the dead one as the new fallback entry, and a failed trial
    // then would fall back into it: a boot loop. Idempotent, so a power cut here just repeats it;
    // errors are logged, not fatal (a rollback path).
    // Disarmed first, as in rollingBack: the undeploy's swap must never meet an armed counter.
    await boot.markGood().catch((err: unknown) => log.warn('could not disarm the spent boot counter', { err }));
    for (const d of dead) await ostree.undeploy(d.index).catch((err: unknown) => log.warn('could not remove the deployment that never came up', { index: d.index, err }));
    return fellBack(release, `release ${release.version} never came up: the bootloader fell back to ${booted}`, 'fellBack');
  };

  /**
   * The bootloader ran out of trial boots. A hang (watchdog reset) or the trial guard's reboot
   * condemns the release; anything else may have been power loss (DESIGN: power lost during a
   * trial is not held against a release), so the machine defers it: offered again after a
   * backoff, a bounded number of times (machine.ts).
   */
  const fellBack = async (release: Release, reason: string, event: 'fellBack' | 'trialReset'): Promise<StepResult> => {
    const guard = await readFile(ports.trialGuardMarker, 'utf8').then((text) => text.trim(), () => null);
    if (guard !== null) {
      const why = `${reason}; the trial guard rebooted an unblessed trial boot (${guard})`;
      return { event, patch: { reason: why }, failedCommit: { commit: release.commit, reason: why } };
    }
    if ((await boot.resetCause()) === 'watchdog') {
      const why = `${reason}; the hardware watchdog reset the last trial boot`;
      return { event, patch: { reason: why }, failedCommit: { commit: release.commit, reason: why } };
    }
    return { event, patch: { reason }, deferredCommit: { commit: release.commit, reason, bootId: await boot.bootId() } };
  };

  const probation = async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    const bootId = await boot.bootId();
    if (bootId !== record.probationBootId) {
      const stillOnTrial = (await knownBootedCommit()) === release.commit;
      const cause = await boot.resetCause();
      if (stillOnTrial && cause !== 'watchdog') {
        // Power loss (or a reset nobody can explain) says nothing against the release: judge it
        // afresh. The bootloader's counter (boot.trialBoots) bounds how often this can happen.
        log.warn('the trial boot was cut short without a watchdog reset; probation starts again', { version: release.version });
        return { event: 'trialRestarted', patch: { probationBootId: bootId, probationStartedAt: ports.now().toISOString() } };
      }
      if (!stillOnTrial) return fellBack(release, `the system restarted during the trial of release ${release.version} and the bootloader fell back`, 'trialReset');
      const reason = `the hardware watchdog reset the system during the trial of release ${release.version}`;
      return { event: 'trialReset', patch: { reason }, failedCommit: { commit: release.commit, reason } };
    }
    // The window runs on this boot's CLOCK_MONOTONIC: a first NTP sync on a gateway without an RTC
    // jumps the wall clock by months and must neither end it at once nor stretch it.
    // `probationStartedAt` stays the wall clock, for reports.
    const startMs = await ports.probationStartMs(release.commit, bootId);
    const verdict = await ports.probation(startMs + ports.probationWindowMs);
    if (!verdict.ok) return { event: 'unhealthy', patch: { reason: verdict.reason }, failedCommit: { commit: release.commit, reason: verdict.reason } };
    await boot.markGood();
    return { event: 'healthy', installed: { version: release.version, commit: release.commit } };
  };

  const rollingBack = async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    // Disarm before touching the deployments: ostree alternates loader.0/loader.1, so after the
    // rollback's swap and the clean-up's swap the boot config number the trial was armed for is
    // in use again, and a cut in between would let GRUB count (and fall back from) the restored
    // release. The release rolled back to is known good: it boots untrialled.
    await boot.markGood();
    const booted = await boot.bootedCommit();
    const deployments = await ostree.deployments();
    if (booted !== release.commit && deployments.find((d) => d.isDefault)?.commit !== release.commit) {
      // Back on the previous system: drop the failed deployment so nothing boots it again, and
      // the second copy of the running commit that a rollback by redeploy leaves (ostree 2022.7
      // has no set-default). Highest index first keeps the lower indices valid.
      const stale = deployments.filter((d) => !d.booted && (d.commit === release.commit || d.commit === booted)).sort((a, b) => b.index - a.index);
      for (const d of stale) await ostree.undeploy(d.index).catch((err: unknown) => log.warn('could not remove a stale deployment', { index: d.index, err }));
      return { event: 'restored' };
    }
    if (deployments.find((d) => d.isDefault)?.commit === release.commit) {
      const fallback = deployments.find((d) => d.commit !== release.commit);
      if (!fallback) throw new OutpostError('UPDATE_ROLLBACK_IMPOSSIBLE', `no previous deployment to roll back to from release ${release.version}`);
      if (deployments[0]?.booted) await ostree.rollback();
      else await ostree.undeploy(0);
    }
    await boot.reboot(`roll back release ${release.version}: ${record.reason ?? 'unknown reason'}`);
    return { event: 'rebootRequested', pause: true };
  };

  const finish = (result: 'committed' | 'rolledBack') => async (record: UpdateRecord): Promise<StepResult> => {
    const release = requireRelease(record);
    await ostree.refUpdate(stagedRef, null).catch((err: unknown) => log.warn('could not drop the staged ref', { err }));
    const file = deltaPath(ports, release);
    if (file && !release.bundleDir) await rm(file, { force: true });
    return { event: 'done', patch: { last: outcome(record, result, ports.now()), release: null, progress: null, reason: null } };
  };

  return {
    downloading: download,
    downloaded: apply,
    applying: deploy,
    deployed: requestReboot,
    rebooting,
    probation,
    committed: finish('committed'),
    rollingBack,
    rolledBack: finish('rolledBack'),
  };
}
