/**
 * `outpost run`: wires the domains into one daemon. This is the only place that knows all of
 * them; each domain sees just the narrow interfaces it is handed.
 */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ApiServer, apiAccess, statusSchema, type AccessGroup, type ApiServerOptions, type Status } from '../api/index.js';
import { loadConfig, type Config, type LoadConfigOptions, type LoadedConfig } from '../config/index.js';
import { OutpostError, isOutpostError } from '../errors.js';
import { loopLagMonitor, markRunning, markStopped, Supervisor, uncleanStopMessage, type Service } from '../lifecycle/index.js';
import type { HealthReport, HealthService } from '../health/index.js';
import { eventsTopic } from '../protocol/index.js';
// Not through link/index.js, which also exports the outbox: a device without a broker does not load it.
import { createLink, type Link } from '../link/mqtt-link.js';
import { createLogger, isJournalStream, journalSink, journalSocketPath, streamSink, type Logger, type LogSink } from '../logs/index.js';
import { createExec, createNotifier, groupId, kernelBootId, loadNative, monotonicMs, openHardwareWatchdog, peerLookup, systemClock, watchdogIntervalMs, type NativeLoad } from '../platform/index.js';
import type { StateDocument } from '../protocol/index.js';
import { unitControl } from './unit-control.js';
import { Store, type OpenEvent } from '../store/index.js';
import { readBootedCommit } from '../update/booted-commit.js';
import type { UpdateService, UpdateStatus } from '../update/index.js';
import { updateStatusText } from '../update/status-text.js';
import type { InboundMessage } from '../commands/service.js';
import type { CommandWiring } from './command-wiring.js';
import type { OutboxWiring } from './outbox-wiring.js';
import { outpostVersion } from '../version.js';

/** The store format this release writes; bump with a migration in store/migrations. */
const storeVersion = 1;

/** Owns the state store for the daemon's lifetime. */
class StoreService implements Service {
  readonly name = 'store';
  store: Store | undefined;
  constructor(
    private readonly location: string,
    private readonly log: Logger,
    /** Whether a release may be on trial, so store steps the release before cannot read must wait. */
    private readonly holdBreaking: ((store: Store) => Promise<boolean>) | undefined,
  ) {}

  async start(): Promise<void> {
    const messages: Record<OpenEvent['kind'], string> = {
      repaired: 'state store was corrupt and has been repaired',
      migrated: 'state store migrated',
      held: 'state store migration held while an update is under way (the release before must read the store); it runs at the first start after',
      newer: 'state store was written by a newer release in a format this one reads; used as it is',
    };
    this.store = await Store.open({
      location: this.location,
      version: storeVersion,
      repair: true,
      ...(this.holdBreaking ? { holdBreaking: this.holdBreaking } : {}),
      onEvent: (event) => this.log.warn(messages[event.kind], { ...event }),
    });
  }

  async stop(): Promise<void> {
    await this.store?.close();
    this.store = undefined;
  }

  /** A commit that has not come back for this long means the disk stopped answering. */
  healthy(): boolean {
    const since = this.store?.oldestPendingCommitMs();
    return since === undefined || monotonicMs() - since < storeStallMs;
  }
}

/** Longest a store commit may take before the watchdog counts the store as stuck (a slow SD card fsyncs in seconds). */
const storeStallMs = 60_000;

/** Adapts the MQTT link to the lifecycle. */
function linkService(link: Link): Service {
  return { name: 'link', start: async () => link.start(), stop: () => link.stop() };
}

/** The report of a device with no checks configured: nothing fails. */
function uncheckedReport(config: Config): HealthReport {
  return { status: 'ok', checks: [], rebootBreaker: { open: false, recent: 0, ...config.health.rebootBreaker } };
}

/** The health part of the state document; `health` keeps its v1 values (protocol/state.ts). */
function stateHealth(report: HealthReport): Pick<StateDocument, 'health' | 'healthReport'> {
  // Bounded: at most 64 configured and 64 greenboot checks, each detail one short line, so the
  // document stays far below its 64 KiB limit whatever the checks print.
  const checks = Object.fromEntries(report.checks.map((c) => [c.name, { status: c.status, severity: c.severity, since: c.since, ...(c.detail === undefined ? {} : { detail: c.detail.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, 160) }) }]));
  return {
    health: report.status === 'failed' ? 'degraded' : report.status,
    healthReport: { status: report.status, checks, ...(report.safeMode === undefined ? {} : { safeMode: report.safeMode.slice(0, 1000) }), ...(report.attention === undefined ? {} : { attention: report.attention.slice(0, 1000) }) },
  };
}

/** Builds the state document from what the daemon knows now. */
function stateDocument(config: Config, bootedCommit: string | null, update: UpdateStatus | undefined, health: HealthReport): StateDocument {
  const updatePart = update && {
    state: update.state,
    installedVersion: update.installedVersion,
    target: update.release,
    progress: update.progress,
    reason: update.reason,
    last: update.last,
  };
  return { schema: 'outpost.state/1', deviceId: config.deviceId, version: outpostVersion, bootedCommit, ...stateHealth(health), ...(updatePart ? { update: updatePart } : {}), updatedAt: new Date().toISOString() };
}

/**
 * The API socket's mode and access rule. With groups configured and the addon, every request is
 * checked by the caller's credentials, so anyone may connect (0666) and is then told no; without
 * the addon callers cannot be told apart, so the groups get nothing and the socket is root's.
 * Without groups the socket's file mode (`api.socketMode`) decides.
 */
function apiAccessOptions(api: Config['api'], native: NativeLoad, log: Logger): Pick<ApiServerOptions, 'mode' | 'access'> {
  const grouped = api.adminGroup !== undefined || api.readGroup !== undefined;
  // No groups: the socket's file mode decides, as it always did.
  if (!grouped) return { mode: Number.parseInt(api.socketMode, 8) };
  const peer = peerLookup(native);
  if (!peer) {
    log.warn('native addon unavailable: API callers cannot be told apart, so only root may use the API', { reason: native.reason });
    return { mode: 0o600 };
  }
  const group = (field: 'adminGroup' | 'readGroup'): AccessGroup | undefined => {
    const name = api[field];
    if (name === undefined) return undefined;
    let gid: number | undefined;
    try {
      gid = groupId(name);
    } catch (err) {
      log.error(`api.${field}: cannot read /etc/group; group ${name} gets no access`, { err });
      return undefined;
    }
    if (gid === undefined) log.error(`api.${field}: there is no group ${name} in /etc/group; its members get no access`);
    return gid === undefined ? undefined : { name, gid };
  };
  const admin = group('adminGroup');
  const read = group('readGroup');
  const rule = apiAccess({ ...(admin ? { admin } : {}), ...(read ? { read } : {}) });
  return { mode: 0o666, access: { peer, rule } };
}

/**
 * Without `installer.socket` the update path runs ostree and the bootloader in this process, which
 * needs root: an unprivileged agent configured so would fail at its first deploy, or leave a trial
 * unblessed. Said at start instead, as a config problem.
 */
export function updatePrivilegeProblem(config: Config, euid: number | undefined): string | undefined {
  if (!config.update || config.installer.socket || config.update.boot.backend === 'simulated' || euid === undefined || euid === 0) return undefined;
  return `installer.socket: not set, and outpost runs as uid ${euid}: without the installer it would run ostree and the bootloader itself, which needs root (set installer.socket to outpost-installer.socket's path, or run outpost as root)`;
}

/**
 * Lines on stdout, which journald captures under systemd; there, records with a MESSAGE_ID go
 * over journald's native socket through the addon (logs/journal.ts), since a line carries none.
 */
function daemonLogSink(native: NativeLoad): LogSink {
  const { addon } = native;
  const lines = streamSink();
  if (!addon || !isJournalStream(1)) return lines;
  return journalSink((datagram) => addon.notify(datagram, journalSocketPath), lines);
}

/** More start time asked of systemd at a time, and in all (TimeoutStartSec stays the limit for a start that does not move). */
const startExtension = { byMs: 60_000, maxMs: 300_000 };

/**
 * Runs the daemon until SIGTERM/SIGINT; resolves with the exit code. `source` is where `config`
 * was loaded from, for checking a config change (`set-config`) the way the next start loads it.
 */
export async function runDaemon({ config, ignored }: LoadedConfig, env: NodeJS.ProcessEnv, source: Pick<LoadConfigOptions, 'path'> = {}): Promise<number> {
  const native = loadNative({ env });
  const log = createLogger({ level: config.log.level, sinks: [daemonLogSink(native)] });
  for (const { file, field, message } of ignored) log.warn('a setting of the config overlay is ignored; the image\'s value applies', { file, field, message });
  const privilegeProblem = updatePrivilegeProblem(config, process.geteuid?.());
  if (privilegeProblem) {
    log.error('cannot run the update path', { problem: privilegeProblem });
    process.stderr.write(`${privilegeProblem}\n`);
    return 78;
  }
  const startedAt = new Date();
  mkdirSync(config.paths.stateDir, { recursive: true, mode: 0o700 });
  mkdirSync(config.paths.runDir, { recursive: true, mode: 0o755 });

  const notifier = createNotifier({ env, native, log: log.child('notify') });
  // Before the domains load: on a slow device (a TCG guest, a loaded gateway) loading them took
  // most of TimeoutStartSec before the supervisor's own extensions begin, and systemd killed the
  // agent mid-load. The supervisor keeps extending once services start.
  void notifier.send({ EXTEND_TIMEOUT_USEC: String(startExtension.byMs * 1000) }).catch(() => undefined);
  // Fault injection for the watchdog test (docs/architecture.md): SIGUSR2 wedges the event loop
  // the way a synchronous call that never returns would; the WATCHDOG=1 pings must stop with it.
  const blockLoopMs = Number(env.OUTPOST_FAULT_BLOCK_LOOP_MS ?? 0);
  if (blockLoopMs > 0) process.on('SIGUSR2', () => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, blockLoopMs));
  let bootedCommit = await readBootedCommit();
  // Commands arrive through the link, which is built before the command service: bound below.
  let receiveCommand: ((message: InboundMessage) => Promise<void>) | undefined;
  const inbox = config.commands
    ? {
        inbox: (message: InboundMessage) => (receiveCommand ? receiveCommand(message) : Promise.reject(new Error('commands are not running yet'))),
        commandGroups: config.commands.groups,
      }
    : {};
  const link = config.broker ? createLink({ broker: config.broker, deviceId: config.deviceId, log: log.child('link'), version: outpostVersion, ...inbox }) : undefined;
  let commands: CommandWiring | undefined;
  let outbox: OutboxWiring | undefined;
  const onTrial = config.update ? async (store: Store) => (await import('../update/machine.js')).updateUnderWay(store) : undefined;
  const storeService = new StoreService(join(config.paths.stateDir, 'store'), log.child('store'), onTrial);
  // The domains are built before the store opens; each reaches it through this once started.
  const requireStore = (): Store => {
    if (!storeService.store) throw new OutpostError('INTERNAL', 'state store is not open');
    return storeService.store;
  };
  // Until the daemon is up, a stop (signal or simulated reboot) is only remembered; it runs
  // once start has finished, so no service is stopped half-started.
  let stopRequestedDuringStart: string | undefined;
  let stop = (reason: string): void => {
    stopRequestedDuringStart ??= reason;
  };
  const requestStop = (reason: string): void => stop(reason);
  // A stop to take up a new config: non-zero (EX_TEMPFAIL), so systemd's Restart=on-failure starts
  // outpost again; 75 is not in RestartPreventExitStatus.
  let stopExitCode = 0;
  const requestRestart = (reason: string): void => {
    stopExitCode = 75;
    requestStop(reason);
  };
  let lastUpdate: UpdateStatus | undefined;
  // Built after the update service, which asks it for probation's checks.
  let health: HealthService | undefined;
  let lastPublish = 0;
  // STATUS= follows the update once READY=1 went out (before that it names the starting service).
  let statusReady = false;
  let statusText = '';
  const showStatus = (status: UpdateStatus): void => {
    const text = updateStatusText(status);
    if (!statusReady || text === statusText) return;
    statusText = text;
    void supervisor.status(text);
  };
  const publishState = (force = false): void => {
    // Progress changes often; the retained state is refreshed at most once a second for it.
    if (!force && Date.now() - lastPublish < 1000) return;
    lastPublish = Date.now();
    link?.publishState(stateDocument(config, bootedCommit, lastUpdate, health?.report() ?? uncheckedReport(config)));
  };
  const simulatedReboot = (reason: string): void => requestStop(`simulated reboot: ${reason}`);
  // Loaded only when configured: a device without updates does not carry the update code's memory.
  const exec = createExec(log.child('exec'));
  const update = config.update
    ? new (await import('../update/service.js')).UpdateService({
        config: config.update,
        stateDir: config.paths.stateDir,
        store: requireStore,
        exec,
        log: log.child('update'),
        linkConnected: () => link?.status.state === 'connected',
        onSimulatedReboot: simulatedReboot,
        ...(config.installer.socket
          ? {
              host: (await import('../installer/client.js')).remoteHost({
                socket: config.installer.socket,
                bootKind: config.update.boot.backend,
                sysroot: config.update.sysroot,
                osname: config.update.osname,
                onSimulatedReboot: simulatedReboot,
                stateDir: config.paths.stateDir,
                exec,
                log: log.child('pull'),
              }),
            }
          : {}),
        onTrusted: (targets) => commands?.onTrusted(targets),
        requiredHealthChecks: async () => (await health?.requiredChecks()) ?? [],
        onChange: (status) => {
          // Fault injection for the crash tests (docs/architecture.md): die like `kill -9` the
          // moment this state has been persisted, so resumption is tested from every state.
          if (env.OUTPOST_FAULT_KILL_AT_STATE === status.state) process.kill(process.pid, 'SIGKILL');
          const changed = status.state !== lastUpdate?.state || status.bootedCommit !== bootedCommit;
          // greenboot's green.d / red.d: once per outcome this process saw happen.
          if (lastUpdate !== undefined && status.last && status.last.at !== lastUpdate.last?.at && status.last.result !== 'failed') {
            void health?.runHooks(status.last.result === 'committed' ? 'green' : 'red');
          }
          lastUpdate = status;
          if (status.bootedCommit) bootedCommit = status.bootedCommit;
          publishState(changed);
          showStatus(status);
        },
      })
    : undefined;
  const requireUpdate = (): UpdateService => {
    if (!update) throw new OutpostError('UPDATE_REFUSED', 'updates are not configured on this device (no "update" section in the config)');
    return update;
  };

  const units = unitControl(config.installer.socket, exec);
  // When the link was last up, for `mqtt` checks: the moment it went down, on CLOCK_MONOTONIC. A
  // start counts as up: the link gets the check's window to come up after it.
  let linkUpUntilMs: number | undefined = monotonicMs();
  let linkWasUp = false;
  link?.onStatus((linkStatus) => {
    if (linkWasUp && linkStatus.state !== 'connected') linkUpUntilMs = monotonicMs();
    linkWasUp = linkStatus.state === 'connected';
  });
  // Loaded only when there is something to check: a device without checks does not carry their code.
  const healthConfigured = config.health.checks.length > 0 || existsSync(config.health.greenboot.dir);
  health = !healthConfigured ? undefined : new (await import('../health/index.js')).HealthService({
    config: config.health,
    store: requireStore,
    clock: systemClock,
    exec,
    log: log.child('health'),
    bootId: () => kernelBootId().catch(() => 'unknown'),
    ...(link ? { link: () => ({ connected: link.status.state === 'connected', lastConnectedMs: linkUpUntilMs }) } : {}),
    ports: {
      restartUnit: (unit) => units.restart(unit),
      restartOutpost: (reason) => requestRestart(`health: ${reason}`),
      reboot: async (reason) => {
        if (!update) throw new OutpostError('UPDATE_REFUSED', 'rebooting needs the update section (its reboot path, through the installer)');
        await update.reboot(reason);
      },
    },
    rollback: () => {
      const last = lastUpdate?.last;
      return last?.result === 'rolledBack' ? { id: `${last.commit}@${last.at}`, reason: `release ${last.version} was rolled back (${last.reason ?? 'no reason recorded'})` } : undefined;
    },
    rebootHeld: () => (lastUpdate && lastUpdate.state !== 'idle' ? `an update is under way (${lastUpdate.state}): the update path decides when to reboot, and a release on trial is judged by its probation` : undefined),
    emit: async (event) => {
      const payload = JSON.stringify({ schema: 'outpost.event/1', at: new Date().toISOString(), ...event });
      if (outbox) await outbox.outbox().put({ class: 'event', topic: eventsTopic(config.deviceId), payload });
      else log.info('health event (no outbox: no broker is configured)', { event: payload });
    },
    onChange: () => publishState(true),
  });

  const status = async (): Promise<Status> => {
    const memory = process.memoryUsage();
    const deployments = await update?.deployments().catch((err: unknown) => void log.debug('cannot list deployments for the status', { err }));
    return {
      deviceId: config.deviceId,
      version: outpostVersion,
      pid: process.pid,
      startedAt: startedAt.toISOString(),
      uptimeSec: (Date.now() - startedAt.getTime()) / 1000,
      bootedCommit: update?.booted ?? bootedCommit,
      link: link ? { ...link.status } : { state: 'disabled', since: startedAt.toISOString(), connects: 0 },
      memory: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed },
      // The status schema keeps the fields it lists and drops the rest (index, origin, ...).
      ...(deployments ? { deployments: statusSchema.shape.deployments.parse(deployments) } : {}),
    };
  };

  const api = new ApiServer({
    socketPath: join(config.paths.runDir, 'api.sock'),
    ...apiAccessOptions(config.api, native, log.child('api')),
    routes: {
      'GET /v1/status': status,
      'GET /v1/update': () => requireUpdate().status(),
      'POST /v1/update/check': () => requireUpdate().check(),
      'POST /v1/update/apply': () => requireUpdate().apply(),
      'POST /v1/update/cancel': () => requireUpdate().cancel(),
      'POST /v1/update/rollback': () => requireUpdate().rollback(),
      'GET /v1/health': async () => health?.report() ?? uncheckedReport(config),
      'POST /v1/health/reset-breaker': async () => {
        if (!health) throw new OutpostError('CONFIG_INVALID', 'no health checks are configured (health.checks, or greenboot scripts in health.greenboot.dir), so there is no reboot breaker to reset');
        await health.resetBreaker();
        return health.report();
      },
    },
    uploads: {
      'POST /v1/update/install': (upload) => requireUpdate().installUpload(upload),
    },
    log: log.child('api'),
  });

  if (link) outbox = (await import('./outbox-wiring.js')).outboxWiring({ store: requireStore, link, maxBytes: config.outbox.maxBytes, log: log.child('outbox') });
  if (config.commands && link && outbox && update) {
    commands = await (await import('./command-wiring.js')).commandWiring({
      config: { ...config, commands: config.commands },
      store: requireStore,
      link,
      outbox,
      update,
      log: log.child('commands'),
      exec,
      loadConfig: (overlayDocument) => loadConfig({ ...source, env, overlayDocument }),
      restart: requestRestart,
      versions: () => ({ outpost: outpostVersion, node: process.versions.node, bootedCommit: update.booted ?? bootedCommit }),
      // Fault injection for the crash tests (docs/architecture.md): a line per step in a file the
      // test reads (how often a handler ran), and a `kill -9` the moment a step is persisted.
      onStep: (step, id) => {
        if (env.OUTPOST_FAULT_COMMAND_STEPS) appendFileSync(env.OUTPOST_FAULT_COMMAND_STEPS, `${step} ${id ?? '-'}\n`);
        if (env.OUTPOST_FAULT_KILL_AT_COMMAND === step) process.kill(process.pid, 'SIGKILL');
      },
    });
    receiveCommand = commands.receive;
  }
  const services: Service[] = [loopLagMonitor({ maxLagMs: config.health.maxLoopLagMs }), storeService];
  if (outbox) services.push(outbox.open);
  services.push(...(commands?.beforeLink ?? []));
  if (link) services.push(linkService(link));
  if (outbox) services.push(outbox.drain);
  if (update) services.push(update);
  if (health) {
    const checks = health;
    // Safe mode and the hold on reboots read the update's state: known before the first check runs.
    services.push({
      name: checks.name,
      start: async () => {
        if (update && lastUpdate === undefined) lastUpdate = await update.status();
        await checks.start();
      },
      stop: () => checks.stop(),
      healthy: () => checks.healthy(),
    });
  }
  services.push(api);

  const supervisor = new Supervisor({
    services,
    notify: (fields) => notifier.send(fields),
    log: log.child('lifecycle'),
    stopTimeoutMs: config.lifecycle.stopTimeoutMs,
    watchdogIntervalMs: watchdogIntervalMs(env, process.pid),
    startExtension,
    ...(config.health.hardwareWatchdog ? { hardwareWatchdog: () => openHardwareWatchdog(config.health.hardwareWatchdog!.device, config.health.hardwareWatchdog!.timeoutSec, native) } : {}),
  });

  // Handlers go in before the first service starts: systemd may stop a unit that is still
  // starting, and node's default for SIGTERM would kill it mid-write instead of stopping cleanly.
  process.on('SIGTERM', requestStop);
  process.on('SIGINT', requestStop);
  log.info('starting', { version: outpostVersion, deviceId: config.deviceId, pid: process.pid, notify: notifier.mechanism, bootedCommit });
  try {
    await supervisor.start();
  } catch (err) {
    log.error('startup failed', { err });
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return isOutpostError(err) ? err.exitCode : 70;
  }
  // Only once started: the store lock and the API socket have shown no other outpost runs.
  const runMarker = join(config.paths.stateDir, 'running');
  const bootId = await kernelBootId().catch(() => 'unknown');
  const unclean = await markRunning(runMarker, { pid: process.pid, bootId, startedAt }).catch((err: unknown) => void log.warn('cannot write the run marker', { file: runMarker, err }));
  if (unclean) log.warn(uncleanStopMessage(unclean), { previous: unclean });
  const stopped = () => markStopped(runMarker).catch((err: unknown) => log.warn('cannot remove the run marker', { file: runMarker, err }));
  bootedCommit = update?.booted ?? bootedCommit;
  publishState(true);
  statusReady = true;
  if (update) showStatus(await update.status());
  // Probation counts down without events; `systemctl status` should still show the time left.
  const countdown = setInterval(() => {
    if (lastUpdate?.state === 'probation') void update?.status().then(showStatus, () => undefined);
  }, 5_000).unref();

  return new Promise<number>((resolve) => {
    let signalled = false;
    stop = (signal: string): void => {
      if (signalled) {
        log.warn('second signal: exiting now', { signal });
        resolve(70);
        return;
      }
      signalled = true;
      log.info('stopping', { signal });
      clearInterval(countdown);
      supervisor.stop().then(
        async () => {
          await stopped();
          log.info('stopped', { exitCode: stopExitCode });
          resolve(stopExitCode);
        },
        (err: unknown) => {
          log.error('stop did not complete', { err });
          resolve(70);
        },
      );
    };
    if (stopRequestedDuringStart) stop(stopRequestedDuringStart);
  });
}
