/**
 * The update service: checks the signed metadata on a schedule, chooses a release, and drives
 * the state machine. It is the daemon's one entry into the update domain.
 *
 * Invariants:
 * - One machine run at a time (an exclusive chain). A check, an apply or a bundle install asked
 *   for while it runs is answered at once (what is being installed; UPDATE_BUSY for a bundle),
 *   never queued behind it.
 * - Resuming an interrupted update happens at start and at every scheduled tick, before any new
 *   check, and needs no network. A resume that fails (a transient error keeps the state) is
 *   retried on the schedule's backoff (schedule.ts), never left for a daemon restart.
 * - Nothing from a server or a bundle is acted on before TUF verified it (select.ts reads only
 *   TrustedTargets).
 */
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { UpdateConfig } from '../config/index.js';
import { OutpostError, isOutpostError } from '../errors.js';
import type { Service } from '../lifecycle/index.js';
import type { Logger } from '../logs/index.js';
import { systemClock, writeFileAtomic, type Clock, type Exec } from '../platform/index.js';
import type { Store } from '../store/index.js';
import type { BootBackend } from './boot/index.js';
import { bundleManifestSchema, listBundle, unpackBundle, unpackBundleRepo } from './bundle.js';
import { createDownloader, freeBytes } from './download.js';
import { dirFetcher, httpFetcher } from './fetchers.js';
import { cancelRefusal, UpdateMachine, UpdateStore } from './machine.js';
import { localHost, type UpdateHost } from './host.js';
import type { Ostree } from './ostree.js';
import type { Deployment } from './ostree-status.js';
import { execCheck, predicateCheck, ProbationWindows, runProbation, type ProbationCheck } from './probation.js';
import type { Progress, Release, UpdateRecord } from './record.js';
import { defaultSchedule, retryDelayMs, type Schedule } from './schedule.js';
import { runningArch, selectRelease, type Selection } from './select.js';
import { agentPullRepo } from './agent-pull.js';
import { createSteps, stagedRef } from './steps.js';
import { allows } from './transitions.js';
import { exportTrusted, exportTrustedRoot, fillRootChain, trustedExportDir } from './trusted-export.js';
import { TufClient, type Fetcher, type TrustedTargets } from './tuf/index.js';


/**
 * No saved state and no download progress for this long while an update runs means it is wedged.
 * Every external call below has its own timeout (exec 10 min, download idle 30 s), so a healthy
 * run always shows progress well within it.
 */
const stallMs = 30 * 60_000;

/** What `outpost update status` and the state topic show. */
export interface UpdateStatus {
  state: UpdateRecord['state'];
  release: { version: number; commit: string; delta: boolean } | null;
  progress: Progress | null;
  reason: string | null;
  last: UpdateRecord['last'];
  installedVersion: number;
  /** The installed release's commit; not the booted one after an operator's rollback from it. Null where unknown. */
  installedCommit: string | null;
  bootedCommit: string | null;
  lastCheck: { at: string; result: string } | null;
  /** In probation: seconds until its window closes (CLOCK_MONOTONIC), else null. */
  probationLeftSec: number | null;
}

/** Options of {@link UpdateService}. */
export interface UpdateServiceOptions {
  config: UpdateConfig;
  stateDir: string;
  /** The daemon's store, opened by the store service before this one starts. */
  store: () => Store;
  exec: Exec;
  log: Logger;
  /**
   * The health framework's required checks, which probation runs besides its own
   * (`update.probation.checks`, kept for configs from before it): each once per round.
   */
  requiredHealthChecks?: () => Promise<readonly ProbationCheck[]>;
  /** Whether the broker link is up, for the optional broker probation check. */
  linkConnected: () => boolean;
  /** The simulated backend's reboot: stop the daemon; its harness starts it again. */
  onSimulatedReboot: (reason: string) => void;
  /** OSTree and the bootloader through the installer; default: this process runs them (localHost). */
  host?: UpdateHost;
  onChange: (status: UpdateStatus) => void;
  /** Called with the targets of every successful metadata refresh (the command issuers live there). */
  onTrusted?: (targets: TrustedTargets) => void;
  /** The wall clock (reports, TUF expiry) and CLOCK_MONOTONIC (windows, timers); default the host's. */
  clock?: Clock;
  /** When scheduled work runs; defaults in schedule.ts. */
  schedule?: Partial<Schedule>;
}

/** Where deltas are downloaded, and where a bundle is unpacked: both emptied whenever the machine is idle. */
const downloadsDir = (stateDir: string) => join(stateDir, 'downloads');
const bundleDir = (stateDir: string) => join(stateDir, 'bundle');
/** Bundles as the CLI streams them in, one directory per upload; emptied at start. */
const uploadsDir = (stateDir: string) => join(stateDir, 'bundle-upload');

/** An upload that sends nothing for this long is given up (the sender hung or the stick was pulled). */
const uploadIdleMs = 60_000;

/**
 * Writes exactly `length` bytes of `stream` to `file`. A sender that stops or stalls is refused
 * (API_BAD_REQUEST); a full disk is DISK_SPACE, another write failure INTERNAL.
 */
async function receiveFile(stream: Readable & { setTimeout?: (ms: number, onTimeout: () => void) => unknown }, file: string, length: number, name: string): Promise<void> {
  let received = 0;
  stream.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  stream.setTimeout?.(uploadIdleMs, () => stream.destroy(new Error(`nothing received for ${uploadIdleMs / 1000} s`)));
  const out = createWriteStream(file, { mode: 0o600 });
  let writeError: NodeJS.ErrnoException | undefined;
  out.on('error', (err) => {
    writeError = err;
  });
  try {
    await pipeline(stream, out);
  } catch (err) {
    if (writeError) {
      const code = writeError.code === 'ENOSPC' ? 'DISK_SPACE' : 'INTERNAL';
      throw new OutpostError(code, `bundle ${name}: cannot store what was received in ${file}: ${writeError.message}`, { cause: writeError });
    }
    throw new OutpostError('API_BAD_REQUEST', `bundle ${name}: the upload broke off after ${received} of ${length} bytes (${(err as Error).message})`, { cause: err });
  } finally {
    // The connection stays open for the answer, which may take minutes of unpacking.
    stream.setTimeout?.(0, () => undefined);
  }
  if (received !== length) throw new OutpostError('API_BAD_REQUEST', `bundle ${name}: the upload ended after ${received} of ${length} bytes`);
}

/** Boot and outpost's start on a slow gateway, before probation's window opens. */
const trialStartAllowanceSec = 120;

/** Past a deferral's end, so the check it wakes finds the backoff over on any clock granularity. */
const offerAgainSlackMs = 1000;

/** How a resume ended: nothing to do, the machine finished or paused (a reboot), or it will retry. */
type ResumeOutcome = 'idle' | 'ran' | 'failed';

/** The update service (a lifecycle Service). */
export class UpdateService implements Service {
  readonly name = 'update';
  private machine: UpdateMachine | undefined;
  private updates: UpdateStore | undefined;
  private ostree: Ostree | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private cancelTimer: (() => void) | undefined;
  /** When the armed timer fires, on CLOCK_MONOTONIC. */
  private timerDueAt = 0;
  private ticking = false;
  /** A retry asked for while a tick ran; that tick arms it when it ends. */
  private retryWithinMs = Infinity;
  /** Scheduled work (a resume, a check) that failed in a row; 0 after one that worked. */
  private failures = 0;
  private progressNow: Progress | null = null;
  /** A bundle upload is being taken in (installUpload). */
  private receiving = false;
  /** CLOCK_MONOTONIC ms at which the running probation's window closes. */
  private probationDeadlineMs: number | undefined;
  private lastCheck: UpdateStatus['lastCheck'] = null;
  private bootedCommit: string | null = null;
  private boot: BootBackend | undefined;
  private stopped = false;
  /**
   * Aborted by `cancel` until it is done: the download under way stops (steps.ts), and the machine
   * holds before any step it could still cancel.
   */
  private cancelling = new AbortController();
  /** Aborted by stop(): a step that judges (probation) gives no verdict while the system goes down. */
  private readonly stopping = new AbortController();
  /** CLOCK_MONOTONIC ms, like every duration here. */
  private runningSince: number | undefined;
  private lastProgressAt = 0;
  private readonly clock: Clock;
  private readonly now: () => Date;
  private readonly schedule: Schedule;

  constructor(private readonly options: UpdateServiceOptions) {
    this.clock = options.clock ?? systemClock;
    this.now = () => this.clock.now();
    this.schedule = { ...defaultSchedule, ...options.schedule };
  }

  async start(): Promise<void> {
    const { config, exec, log } = this.options;
    // No upload can be under way yet: what is there was cut off by a crash or power loss.
    await rm(uploadsDir(this.options.stateDir), { recursive: true, force: true });
    const { ostree, boot } = this.options.host ?? localHost({ config, stateDir: this.options.stateDir, exec, log, onSimulatedReboot: this.options.onSimulatedReboot });
    await boot.atStart();
    await this.askTrialGuard();
    this.boot = boot;
    this.ostree = ostree;
    this.bootedCommit = await boot.bootedCommit();
    this.updates = new UpdateStore(this.options.store(), { maxAttempts: config.deferral.trials, backoffMs: config.deferral.backoffSec * 1000 }, this.clock.monotonicMs);
    const downloadDir = downloadsDir(this.options.stateDir);
    await mkdir(downloadDir, { recursive: true });
    const base = config.server.endsWith('/') ? config.server : `${config.server}/`;
    const windows = new ProbationWindows(this.options.store(), this.clock.monotonicMs);
    this.machine = new UpdateMachine({
      store: this.updates,
      log: log.child('machine'),
      now: this.now,
      onChange: () => void this.publish(),
      steps: createSteps({
        ostree,
        boot,
        downloader: createDownloader({
          log: log.child('download'),
          minRateBytesPerSec: config.minDownloadBytesPerSec,
          rateGraceMs: config.slowDownloadGraceSec * 1000,
          ...(config.bandwidthBytesPerSec ? { bandwidthBytesPerSec: config.bandwidthBytesPerSec } : {}),
        }),
        sources: { targetUrl: (name) => new URL(`targets/${name}`, base).href, ...(config.ostreeUrl ? { ostreeUrl: config.ostreeUrl } : {}) },
        probation: async (deadlineMs) => {
          this.probationDeadlineMs = deadlineMs;
          void this.publish();
          return runProbation(await this.probationChecks(), { deadlineMs, intervalMs: config.probation.intervalSec * 1000, nowMs: this.clock.monotonicMs, signal: this.stopping.signal });
        },
        probationStartMs: (commit, bootId) => windows.startMs(commit, bootId),
        probationWindowMs: config.probation.windowSec * 1000,
        downloadDir,
        applyHeadroomBytes: config.applyHeadroomBytes,
        freeBytes: (path) => freeBytes(path),
        bandwidthCapped: config.bandwidthBytesPerSec !== undefined,
        fsckBeforeDeploy: config.fsckBeforeDeploy,
        trialGuardMarker: join(this.options.stateDir, 'trial-guard.fired'),
        log: log.child('steps'),
        now: this.now,
        onProgress: (p) => {
          this.progressNow = p;
          void this.publish();
        },
        cancelSignal: () => this.cancelling.signal,
      }),
    });
    // Resume first (no network needed), then check on schedule.
    void this.exclusive(() => this.resume());
    this.arm(this.schedule.firstCheckMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort(new OutpostError('UPDATE_STOPPING', 'outpost is stopping: probation gives no verdict and runs again at the next start', { transient: true }));
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  /** The OSTree deployments in boot order, as `ostree admin status` lists them. */
  async deployments(): Promise<Deployment[]> {
    return this.requireOstree().deployments();
  }

  /** The commit the boot port says is running (null before start or when not an OSTree boot). */
  get booted(): string | null {
    return this.bootedCommit;
  }

  /** Current status for the API and the state topic. */
  async status(): Promise<UpdateStatus> {
    const record = await this.requireMachine().record();
    const release = record.release;
    return {
      state: record.state,
      release: release ? { version: release.version, commit: release.commit, delta: release.delta !== null } : null,
      progress: record.state === 'downloading' ? this.progressNow : record.progress,
      reason: record.reason,
      last: record.last,
      installedVersion: await this.requireUpdates().installedVersion(),
      installedCommit: await this.requireUpdates().installedCommit(),
      bootedCommit: this.bootedCommit,
      lastCheck: this.lastCheck,
      probationLeftSec: record.state === 'probation' && this.probationDeadlineMs !== undefined ? Math.max(0, Math.ceil((this.probationDeadlineMs - this.clock.monotonicMs()) / 1000)) : null,
    };
  }

  /**
   * Reboots through the update path's own adapter (the installer, or the bootloader backend), so
   * a trial under way counts the boot as it counts its own.
   */
  async reboot(reason: string): Promise<void> {
    if (!this.boot) throw new OutpostError('UPDATE_STOPPING', 'the update service is not running, so it cannot reboot');
    await this.boot.reboot(reason);
  }

  /**
   * Refreshes the signed metadata and says what would be installed. While an update runs (hours
   * on a slow link) the answer is that one, at once, instead of queueing behind it until the CLI
   * gives up.
   */
  async check(automatic = false): Promise<Selection> {
    const underWay = await this.underWay();
    if (underWay !== null) return { release: null, reason: underWay.text };
    return this.exclusive(async () => {
      const { config } = this.options;
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(new OutpostError('UPDATE_UNAVAILABLE', `the update check exceeded its ${config.checkDeadlineSec} s deadline (update.checkDeadlineSec)`, { transient: true })), config.checkDeadlineSec * 1000);
      try {
        return await this.select(this.serverFetcher(deadline.signal), { automatic });
      } finally {
        clearTimeout(timer);
      }
    });
  }

  /**
   * Checks and, when a release is available, starts installing it (returns once persisted). An
   * update already running (the daemon's own check started it, say) is the answer, not an error:
   * what the operator asked for is under way.
   */
  async apply(): Promise<Selection> {
    const underWay = await this.underWay();
    if (underWay !== null) return { release: underWay.release, inProgress: underWay.state };
    const selection = await this.check();
    if (!selection.release) return selection;
    const begun = await this.begin(selection.release);
    return 'inProgress' in begun ? begun : selection;
  }

  /**
   * Cancels the update under way if it has not reached its deploy: the download stops at once, a
   * delta being applied is let finish first (ostree has no safe stop). The release is then passed
   * over by automatic checks until an explicit `apply`. Nothing under way: says so, changes nothing.
   */
  async cancel(): Promise<{ cancelled: { version: number; commit: string } | null; reason?: string }> {
    const machine = this.requireMachine();
    const nothing = { cancelled: null, reason: 'no update is under way' };
    const record = await machine.record();
    if (record.release === null) return nothing;
    const refusal = cancelRefusal(record);
    if (refusal) throw refusal;
    this.cancelling.abort(new OutpostError('UPDATE_CANCELLED', `the update to release ${record.release.version} was cancelled`));
    try {
      return await this.exclusive(async () => {
        const ended = await machine.cancel('cancelled by an operator (outpost update cancel)');
        if (ended === null) return nothing;
        // A staged commit from an apply that finished just before the cancel would pin its objects.
        await this.requireOstree().refUpdate(stagedRef, null).catch((err: unknown) => this.options.log.warn('could not drop the staged ref', { err }));
        await this.tidyWhenIdle();
        const last = ended.last;
        return { cancelled: last ? { version: last.version, commit: last.commit } : null };
      });
    } finally {
      this.cancelling = new AbortController();
    }
  }

  /**
   * Goes back to the deployment ostree keeps for rollback (the release before), through the same
   * rollback states as a failed trial: the running release is not offered again. Only from idle;
   * returns once persisted, and the machine reboots into the previous deployment.
   */
  async rollback(): Promise<{ from: { version: number; commit: string }; to: { commit: string } }> {
    const result = await this.exclusive(async () => {
      const underWay = await this.underWay();
      if (underWay !== null) throw new OutpostError('UPDATE_BUSY', `${underWay.text}; cancel it (before its deploy) or let its trial decide, then roll back`);
      const deployments = await this.requireOstree().deployments();
      const booted = deployments.find((d) => d.booted);
      const target = deployments.find((d) => d.rollback);
      const impossible = (why: string) => new OutpostError('UPDATE_ROLLBACK_IMPOSSIBLE', `cannot roll back: ${why} (see outpost status)`);
      if (!booted) throw impossible('the running system is not an OSTree deployment');
      // A deployment queued ahead of the running one would be what the rollback reboots into.
      if (!booted.isDefault) throw impossible('another deployment is the default for the next boot');
      if (!target || target.commit === booted.commit) throw impossible('ostree keeps no other release besides the running one');
      if (await this.requireUpdates().hasFailed(target.commit)) throw impossible(`the deployment kept for rollback (${target.commit}) failed its trial here`);
      const version = await this.requireUpdates().installedVersion();
      if (version === 0) throw new OutpostError('UPDATE_ROLLBACK_IMPOSSIBLE', 'the running system is the factory image: outpost installed nothing to roll back from');
      const { config } = this.options;
      const leaving: Release = { target: 'running', version, commit: booted.commit, ref: booted.origin ?? '', arch: config.arch ?? runningArch(), hardware: config.hardware, delta: null };
      await this.requireMachine().rollBack(leaving, `rolled back on request (outpost update rollback) to ${target.commit}`);
      return { from: { version, commit: booted.commit }, to: { commit: target.commit } };
    });
    void this.exclusive(() => this.resume());
    return result;
  }

  /**
   * Tells outpost-trial-guard the deadline this config needs (the probation window plus start-up
   * time), so a long window is not cut short by the guard's default. Written before any trial
   * this outpost arms reboots, so the trial's guard reads what the arming outpost asked for.
   */
  private async askTrialGuard(): Promise<void> {
    const file = join(this.options.stateDir, 'trial-guard.min-sec');
    const seconds = this.options.config.probation.windowSec + trialStartAllowanceSec;
    // A hint: a full or read-only disk must not keep outpost from starting (and blessing a trial).
    await writeFileAtomic(file, `${seconds}\n`, { mode: 0o644 }).catch((err: unknown) => this.options.log.warn('cannot tell the trial guard the probation window', { file, err }));
  }

  /**
   * The update under way, from the saved state (running, or waiting for its retry or its reboot),
   * or null when the machine is idle.
   */
  private async underWay(): Promise<{ release: Release; state: string; text: string } | null> {
    const record = await this.requireMachine().record();
    if (record.state === 'idle' || !record.release) return null;
    return { release: record.release, state: record.state, text: `an update to release ${record.release.version} is under way (${record.state})` };
  }

  /**
   * Receives an offline bundle the CLI streams (`length` bytes, `name` for messages) and installs
   * it; the received copy is removed either way. The CLI opened the file with its caller's rights:
   * the daemon never opens a path a caller names, and a bundle in /tmp or /home reaches it despite
   * the unit's PrivateTmp and ProtectHome.
   */
  async installUpload(upload: { stream: Readable; length: number; name: string }): Promise<Selection> {
    await this.refuseWhileBusy();
    // One at a time: two would each see the same free space.
    if (this.receiving) throw new OutpostError('UPDATE_BUSY', `another bundle is being received; install ${upload.name} once it is over`);
    this.receiving = true;
    const dir = join(uploadsDir(this.options.stateDir), randomUUID());
    try {
      await mkdir(dir, { recursive: true });
      // The copy stays while it is unpacked: room for both, before a byte is taken in.
      const free = await freeBytes(dir);
      const { applyHeadroomBytes } = this.options.config;
      if (2 * upload.length + applyHeadroomBytes > free) {
        throw new OutpostError('DISK_SPACE', `bundle ${upload.name}: receiving and unpacking it needs twice its ${upload.length} bytes plus the apply headroom (${applyHeadroomBytes}), ${free} are free in ${dir}`);
      }
      const file = join(dir, 'bundle.tar');
      await receiveFile(upload.stream, file, upload.length, upload.name);
      return await this.install(file, upload.name);
    } finally {
      this.receiving = false;
      await rm(dir, { recursive: true, force: true });
    }
  }

  private async refuseWhileBusy(): Promise<void> {
    const underWay = await this.underWay();
    if (underWay !== null) throw new OutpostError('UPDATE_BUSY', `${underWay.text}; install the bundle once it is over`);
  }

  /** Installs from an offline bundle file (a tar written by `outpostctl release bundle`), `shown` in messages. */
  private async install(file: string, shown: string): Promise<Selection> {
    const dir = bundleDir(this.options.stateDir);
    const selection = await this.exclusive(async () => {
      const record = await this.requireMachine().record();
      if (record.state !== 'idle') throw new OutpostError('UPDATE_BUSY', `an update is already in progress (${record.state})`);
      const { exec, config } = this.options;
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      // Listed and budgeted before a byte lands: a bundle is as untrusted as the network.
      const listing = await listBundle(exec, file, shown);
      const bytes = listing.bytes;
      const free = await freeBytes(dir);
      if (bytes + config.applyHeadroomBytes > free) {
        throw new OutpostError('DISK_SPACE', `bundle ${shown}: unpacking needs ${bytes} bytes plus the apply headroom (${config.applyHeadroomBytes}), ${free} are free in ${dir}`);
      }
      // The manifest and the metadata first; the release's own files only once TUF verified it.
      await unpackBundle(exec, file, dir, listing, (path) => path === 'bundle.json' || path.startsWith('metadata/'));
      const manifest = bundleManifestSchema.safeParse(JSON.parse(await readFile(join(dir, 'bundle.json'), 'utf8').catch(() => 'null')));
      if (!manifest.success) throw new OutpostError('UPDATE_REFUSED', `bundle ${shown}: no valid bundle.json (not an outpost bundle?)`);
      const chosen = await this.select(dirFetcher(join(dir, 'metadata')), { only: manifest.data.target });
      if (!chosen.release) throw new OutpostError('UPDATE_REFUSED', `bundle ${shown}: ${chosen.reason}`);
      const delta = chosen.release.delta;
      if (delta) await unpackBundle(exec, file, dir, listing, (path) => path === `targets/${delta.target}`);
      else await unpackBundleRepo(exec, file, dir, listing, shown);
      const release = { ...chosen.release, bundleDir: dir };
      // In the same turn of the chain as the unpacking: an idle tick in between would tidy it away.
      await this.beginLocked(release);
      return { release };
    });
    void this.exclusive(() => this.resume());
    return selection;
  }

  /**
   * Progress-based health (STYLE 11): while an update runs, every saved state and every download
   * progress tick counts as progress; a run with none for `stallMs` is wedged, so the watchdog
   * ping is withheld and systemd restarts the daemon, which resumes from the saved state.
   * Measured on CLOCK_MONOTONIC: an NTP jump is not a stall.
   */
  healthy(): boolean {
    // Probation legitimately saves nothing for up to its window.
    const limit = stallMs + this.options.config.probation.windowSec * 1000;
    return this.runningSince === undefined || this.clock.monotonicMs() - this.lastProgressAt < limit;
  }

  /**
   * Persists the start of an update and runs it in the background, unless the caller runs it. An
   * update begun meanwhile (the schedule's check and an operator's apply chose at once) is the
   * answer: what was asked for is under way.
   */
  private async begin(release: Release, run = true): Promise<Selection> {
    const underWay = await this.exclusive(async () => {
      const running = await this.underWay();
      if (running === null) await this.beginLocked(release);
      return running;
    });
    if (underWay !== null) return { release: underWay.release, inProgress: underWay.state };
    if (run) void this.exclusive(() => this.resume());
    return { release };
  }

  /** Starts `release` from idle; called inside the exclusive chain. */
  private async beginLocked(release: Release): Promise<void> {
    const record = await this.requireMachine().record();
    if (record.state !== 'idle') throw new OutpostError('UPDATE_BUSY', `an update is already in progress (${record.state})`);
    await this.requireMachine().begin(release, this.bootedCommit);
  }

  /** The update server's metadata, each file within its deadline, all of it until `signal`. */
  private serverFetcher(signal: AbortSignal): Fetcher {
    const { config, log } = this.options;
    return httpFetcher(config.server, { deadlineMs: config.metadataDeadlineSec * 1000, signal, log: log.child('fetch') });
  }

  /** Refreshes the signed metadata and exports it for the installer's own check. */
  private async refreshTrusted(fetcher: Fetcher): Promise<TrustedTargets> {
    const exportDir = trustedExportDir(this.options.stateDir);
    const tuf = await this.tufClient(fetcher, exportDir);
    const targets = await tuf.refresh();
    this.options.onTrusted?.(targets);
    await exportTrusted(this.options.store(), exportDir, targets.versions.root);
    await fillRootChain(fetcher, exportDir, targets.versions.root, this.options.log);
    return targets;
  }

  /**
   * What the store trusts without the network (stored targets, not judged for expiry) and the
   * newest trusted time: for commands, which must work while the update server is unreachable.
   */
  async storedTrust(): Promise<{ targets: TrustedTargets | undefined; notEarlierThan: Date | undefined }> {
    const offline: Fetcher = { fetch: async () => undefined };
    const tuf = await this.tufClient(offline, trustedExportDir(this.options.stateDir));
    return { targets: await tuf.stored(), notEarlierThan: await tuf.notEarlierThan() };
  }

  private async tufClient(fetcher: Fetcher, exportDir: string): Promise<TufClient> {
    const { config, log } = this.options;
    return new TufClient({
      store: this.options.store(),
      fetcher,
      initialRoot: await readFile(config.rootFile),
      now: this.now,
      log: log.child('tuf'),
      onRootTrusted: (version, bytes) => exportTrustedRoot(exportDir, version, bytes),
    });
  }

  /**
   * Before the deploy step, with an installer that checks the metadata: a download that took
   * longer than the timestamp's lifetime (hours on a slow link) would meet metadata the installer
   * finds expired, and the release would be downloaded again and again. So it is refreshed first;
   * offline, the installer decides with what was exported.
   */
  private async freshenForDeploy(record: UpdateRecord): Promise<void> {
    const { config, log, host } = this.options;
    if (record.state !== 'applying' || host === undefined || record.release?.bundleDir !== undefined) return;
    const signal = AbortSignal.any([AbortSignal.timeout(config.checkDeadlineSec * 1000), this.stopping.signal]);
    await this.refreshTrusted(this.serverFetcher(signal)).catch((err: unknown) => log.warn('cannot refresh the signed metadata before the deploy; the installer checks what was exported', { err }));
  }

  /** `automatic`: the schedule's own check, which passes over releases an operator cancelled. */
  private async select(fetcher: Fetcher, { only, automatic = false }: { only?: string; automatic?: boolean } = {}): Promise<Selection> {
    const { config, log } = this.options;
    const updates = this.requireUpdates();
    try {
      const targets = await this.refreshTrusted(fetcher);
      const selection = await selectRelease(targets, {
        hardware: config.hardware,
        arch: config.arch ?? runningArch(),
        bootedCommit: this.bootedCommit,
        installedVersion: await updates.installedVersion(),
        hasFailed: (commit) => updates.hasFailed(commit),
        deferredWait: async (commit) => updates.deferredWait(commit, await this.requireBoot().bootId()),
        wasCancelled: async (commit) => automatic && (await updates.wasCancelled(commit)),
        ...(only === undefined ? {} : { only }),
      });
      this.lastCheck = { at: this.now().toISOString(), result: selection.release ? [`release ${selection.release.version} available`, ...(selection.skipped ?? [])].join('; ') : selection.reason };
      if (selection.release && selection.skipped) log.warn('signed release targets skipped as malformed', { skipped: selection.skipped });
      return selection;
    } catch (err) {
      this.lastCheck = { at: this.now().toISOString(), result: `check failed: ${err instanceof Error ? err.message : String(err)}` };
      throw err;
    } finally {
      void this.publish();
    }
  }

  /**
   * Runs the machine until it is idle or pauses. A step error keeps the state (machine.ts), so
   * the retry is scheduled here: by the running tick, or sooner than the armed timer otherwise.
   */
  private async resume(): Promise<ResumeOutcome> {
    const machine = this.requireMachine();
    if ((await machine.record()).state === 'idle') {
      await this.tidyWhenIdle();
      return 'idle';
    }
    this.runningSince = this.clock.monotonicMs();
    this.lastProgressAt = this.runningSince;
    try {
      const settled = await machine.run({ holdBefore: (record) => this.cancelling.signal.aborted && allows(record.state, 'cancelled'), beforeStep: (record) => this.freshenForDeploy(record) });
      this.failures = 0;
      if (settled.state === 'idle') await this.tidyWhenIdle();
      return 'ran';
    } catch (err) {
      // The step stopped for a cancel, which runs next in the chain.
      if (this.cancelling.signal.aborted) return 'ran';
      this.failures += 1;
      const retryMs = this.nextRetryMs();
      this.options.log.warn('update paused; will retry', { err, retryInSec: Math.round(retryMs / 1000) });
      this.retryIn(retryMs);
      return 'failed';
    } finally {
      this.runningSince = undefined;
    }
  }

  /**
   * With no update in flight, what an earlier attempt left (a failed attempt's delta, a refused or
   * installed bundle unpacked) only takes space a small disk needs.
   */
  private async tidyWhenIdle(): Promise<void> {
    const { log, stateDir } = this.options;
    for (const dir of [downloadsDir(stateDir), bundleDir(stateDir), agentPullRepo(stateDir)]) {
      const left = await readdir(dir).catch(() => []);
      for (const name of left) await rm(join(dir, name), { recursive: true, force: true }).catch((err: unknown) => log.warn('cannot remove what an earlier update attempt left', { file: join(dir, name), err }));
      if (left.length > 0) log.info('removed what an earlier update attempt left', { dir, entries: left.length });
    }
  }

  /**
   * One scheduled tick: an unfinished update is resumed first; only an idle machine checks for
   * a new release (and installs it). A machine that paused waits for its reboot until the next
   * interval, which also retries a reboot that never happened.
   */
  private async tick(): Promise<void> {
    const { log } = this.options;
    this.ticking = true;
    let nextMs = this.intervalMs();
    try {
      if ((await this.exclusive(() => this.resume())) === 'idle') {
        const selection = await this.check(true);
        this.failures = 0;
        log.info('update check', { result: selection.release ? `installing release ${selection.release.version}` : selection.reason });
        // "Offered again in 10 min" holds even with a daily check interval.
        if (selection.release === null && selection.offerAgainInMs !== undefined) nextMs = Math.min(nextMs, selection.offerAgainInMs + offerAgainSlackMs);
        if (selection.release) {
          await this.begin(selection.release, false);
          await this.exclusive(() => this.resume());
        }
      }
    } catch (err) {
      // Transient or not: a server fixed (re-signed, back up) a minute later should not cost an hour.
      this.failures += 1;
      nextMs = this.nextRetryMs();
      log.warn('update check failed', { err, transient: isOutpostError(err) ? err.transient : undefined, retryInSec: Math.round(nextMs / 1000) });
    } finally {
      this.ticking = false;
      const retryMs = this.retryWithinMs;
      this.retryWithinMs = Infinity;
      this.arm(Math.min(nextMs, retryMs));
    }
  }

  /** Asks for a tick within `ms`: the running tick arms it as it ends; else the timer moves up. */
  private retryIn(ms: number): void {
    if (this.ticking) this.retryWithinMs = Math.min(this.retryWithinMs, ms);
    else if (this.timerDueAt > this.clock.monotonicMs() + ms) this.arm(ms);
  }

  private arm(delayMs: number): void {
    if (this.stopped) return;
    this.cancelTimer?.();
    this.timerDueAt = this.clock.monotonicMs() + delayMs;
    this.cancelTimer = this.schedule.timer(() => {
      this.cancelTimer = undefined;
      void this.tick();
    }, delayMs);
  }

  private intervalMs(): number {
    return this.options.config.checkIntervalSec * 1000;
  }

  private nextRetryMs(): number {
    return retryDelayMs(this.failures, this.schedule, this.intervalMs());
  }

  private async probationChecks(): Promise<ProbationCheck[]> {
    const { config, exec } = this.options;
    const checks: ProbationCheck[] = [];
    if (config.probation.requireBroker) checks.push(predicateCheck('broker', this.options.linkConnected, 'broker not reachable'));
    // Checks see the running deployment's files at OUTPOST_DEPLOYMENT_ROOT: `/` on a booted
    // device; the deployment's directory under the simulated bootloader.
    const env = { OUTPOST_DEPLOYMENT_ROOT: await this.deploymentRoot() };
    for (const check of config.probation.checks) checks.push(execCheck(exec, check.name, check.command, check.timeoutMs, env));
    checks.push(...((await this.options.requiredHealthChecks?.()) ?? []));
    return checks;
  }

  private async deploymentRoot(): Promise<string> {
    const { config } = this.options;
    if (config.boot.backend !== 'simulated') return '/';
    const booted = (await this.requireOstree().deployments()).find((d) => d.booted);
    return booted ? join(config.sysroot, 'ostree', 'deploy', config.osname, 'deploy', `${booted.commit}.${booted.serial}`) : '/';
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async publish(): Promise<void> {
    this.lastProgressAt = this.clock.monotonicMs();
    if (!this.machine) return;
    try {
      this.options.onChange(await this.status());
    } catch (err) {
      this.options.log.debug('cannot publish update status', { err });
    }
  }

  private requireMachine(): UpdateMachine {
    if (!this.machine) throw new OutpostError('INTERNAL', 'update service not started');
    return this.machine;
  }

  private requireBoot(): BootBackend {
    if (!this.boot) throw new OutpostError('INTERNAL', 'update service not started');
    return this.boot;
  }

  private requireOstree(): Ostree {
    if (!this.ostree) throw new OutpostError('INTERNAL', 'update service not started');
    return this.ostree;
  }

  private requireUpdates(): UpdateStore {
    if (!this.updates) throw new OutpostError('INTERNAL', 'update service not started');
    return this.updates;
  }
}
