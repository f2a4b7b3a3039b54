/**
 * The update service of an OTA world's device, run in this process: the real `UpdateService` with
 * the real store, exec, ostree sysroot, HTTP server and simulated bootloader, for tests that must
 * reach what a daemon child process cannot expose (its scheduler's timer, its clock, `healthy()`).
 * A simulated reboot stops the service; `boot()` starts the next one on the same state, which
 * plays the bootloader exactly as a restarted daemon does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema } from '../../runtime/config/index.js';
import { createLogger, type LogRecord } from '../../runtime/logs/index.js';
import { createExec, type Exec } from '../../runtime/platform/index.js';
import { Store } from '../../runtime/store/index.js';
import type { Schedule } from '../../runtime/update/schedule.js';
import { UpdateService, type UpdateServiceOptions, type UpdateStatus } from '../../runtime/update/index.js';
import type { OtaWorld } from './ota-world.js';
import { until } from './until.js';

/** Options of {@link otaService}. */
export interface OtaServiceOptions {
  /** Overrides of the world's `update` config section. */
  update?: Record<string, unknown>;
  schedule?: Partial<Schedule>;
  /** Wraps the real exec, e.g. to see when a probation check runs. */
  exec?: (exec: Exec) => Exec;
  /** Further service options. */
  service?: Partial<Pick<UpdateServiceOptions, 'clock'>>;
}

/** A device whose update service runs in this process. */
export interface OtaService {
  readonly stateDir: string;
  /** Every log record of every boot. */
  readonly logs: LogRecord[];
  /** Reasons of the simulated reboots so far. */
  readonly reboots: string[];
  /** The running service (after `boot()`). */
  readonly service: UpdateService;
  /** Stops the running service, if any, and starts a new one: the next boot. */
  boot(): Promise<UpdateService>;
  /** Waits until the status satisfies `done` (polls every 100 ms). */
  waitFor(what: string, done: (status: UpdateStatus) => boolean, timeoutMs?: number): Promise<UpdateStatus>;
  close(): Promise<void>;
}

/** Opens the device's store and makes its first service (not started: call `boot()`). */
export async function otaService(ota: OtaWorld, options: OtaServiceOptions = {}): Promise<OtaService> {
  const stateDir = mkdtempSync(join(tmpdir(), 'outpost-service-'));
  const config = configSchema.parse({ deviceId: 'gw-test-1', update: ota.updateConfig(options.update) }).update;
  if (!config) throw new Error('no update config');
  const store = await Store.open({ location: join(stateDir, 'store'), version: 1 });
  const logs: LogRecord[] = [];
  const reboots: string[] = [];
  const log = createLogger({ level: 'debug', sinks: [(record) => void logs.push(record)] });
  const realExec = createExec(log.child('exec'));
  let current: UpdateService | undefined;
  const make = (): UpdateService =>
    new UpdateService({
      config,
      stateDir,
      store: () => store,
      exec: options.exec ? options.exec(realExec) : realExec,
      log: log.child('update'),
      linkConnected: () => false,
      onSimulatedReboot: (reason) => void reboots.push(reason),
      onChange: () => undefined,
      ...(options.schedule ? { schedule: options.schedule } : {}),
      ...options.service,
    });
  const device: OtaService = {
    stateDir,
    logs,
    reboots,
    get service() {
      if (!current) throw new Error('not booted');
      return current;
    },
    boot: async () => {
      await current?.stop();
      current = make();
      await current.start();
      return current;
    },
    waitFor: (what, done, timeoutMs = 60_000) =>
      until(what, async () => {
        const status = await device.service.status();
        return done(status) ? status : undefined;
      }, timeoutMs),
    close: async () => {
      await current?.stop();
      await store.close();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  return device;
}
