/**
 * Starts services in order, tells systemd when the daemon is ready, feeds the systemd watchdog
 * while every service is healthy, and stops everything in reverse within a bounded time.
 *
 * Invariants:
 * - READY=1 is sent only after every service's start() resolved.
 * - While services start, systemd is asked for more time (EXTEND_TIMEOUT_USEC) up to a cap: a
 *   start slowed by a loaded device is not killed at TimeoutStartSec; one that hangs still is.
 * - A start failure stops the services already started (reverse order) before rethrowing.
 * - stop() is idempotent and never takes longer than `stopTimeoutMs`; a service that hangs in
 *   stop is abandoned with an error rather than holding the whole daemon.
 */
import { OutpostError, toOutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { HardwareWatchdog } from '../platform/index.js';
import type { Notify, Service } from './service.js';

/** Timer functions, injectable so tests can drive time. */
export interface Timers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Options for {@link Supervisor}. */
export interface SupervisorOptions {
  services: readonly Service[];
  notify: Notify;
  log: Logger;
  stopTimeoutMs: number;
  /** Half of WATCHDOG_USEC (sd_watchdog_enabled); undefined when systemd does not watch us. */
  watchdogIntervalMs?: number;
  /**
   * Asks for `byMs` more start time every `byMs / 2` while services start, for at most `maxMs`
   * in all; without it the unit's TimeoutStartSec alone applies.
   */
  startExtension?: { byMs: number; maxMs: number };
  /**
   * Opens the hardware watchdog once every service started (opening arms it). It is fed on the
   * same rule as WATCHDOG=1, at a third of its timeout, and closed with the magic character on an
   * orderly stop; a failed start or a crash leaves it to reset the board.
   */
  hardwareWatchdog?: () => HardwareWatchdog;
  timers?: Timers;
}

/** Runs the daemon's services as one unit. */
export class Supervisor {
  private readonly started: Service[] = [];
  private watchdogTimer: unknown;
  private hardware: { device: HardwareWatchdog; timer: unknown } | undefined;
  private stopping: Promise<void> | undefined;
  private withheld = false;
  private readonly timers: Timers;

  constructor(private readonly options: SupervisorOptions) {
    this.timers = options.timers ?? realTimers;
  }

  /** Starts every service in order, then sends READY=1. */
  async start(): Promise<void> {
    const stopExtending = this.extendStartTimeout();
    try {
      for (const service of this.options.services) {
        await this.status(`starting ${service.name}`);
        try {
          await service.start();
        } catch (err) {
          this.options.log.error('service failed to start', { service: service.name, err });
          await this.stopStarted();
          throw toOutpostError(err, 'INTERNAL', `service ${service.name} failed to start`);
        }
        this.started.push(service);
      }
    } finally {
      stopExtending();
    }
    this.startWatchdog();
    this.startHardwareWatchdog();
    await this.options.notify({ READY: '1', STATUS: 'running' }).catch((err: unknown) => this.options.log.warn('cannot notify systemd', { err }));
    this.options.log.info('ready', { services: this.started.map((s) => s.name) });
  }

  /**
   * On a slow device (a TCG guest, a loaded gateway) the update service's start waits for the
   * socket-activated installer's own start; together they outlast TimeoutStartSec, and systemd
   * killed the agent and started it again from scratch, minutes lost per boot.
   */
  private extendStartTimeout(): () => void {
    const extension = this.options.startExtension;
    if (extension === undefined) return () => undefined;
    const everyMs = Math.max(1, Math.floor(extension.byMs / 2));
    let askedMs = 0;
    const handle = this.timers.setInterval(() => {
      if (askedMs >= extension.maxMs) return;
      askedMs += everyMs;
      this.options.notify({ EXTEND_TIMEOUT_USEC: String(extension.byMs * 1000) }).catch((err: unknown) => this.options.log.debug('cannot send EXTEND_TIMEOUT_USEC', { err }));
    }, everyMs);
    return () => this.timers.clearInterval(handle);
  }

  /** Reports progress to systemd (`systemctl status` shows it). */
  async status(text: string): Promise<void> {
    await this.options.notify({ STATUS: text }).catch((err: unknown) => this.options.log.debug('cannot send STATUS', { err }));
  }

  /** True while every started service reports healthy. */
  healthy(): boolean {
    return this.started.every((s) => s.healthy?.() ?? true);
  }

  /** The started services that report no progress. */
  private stalled(): string[] {
    return this.started.filter((s) => s.healthy?.() === false).map((s) => s.name);
  }

  /** Sends STOPPING=1 and stops all services in reverse order, bounded by stopTimeoutMs. */
  stop(): Promise<void> {
    this.stopping ??= this.stopBounded();
    return this.stopping;
  }

  private async stopBounded(): Promise<void> {
    await this.options.notify({ STOPPING: '1', STATUS: 'stopping' }).catch(() => undefined);
    let timer: unknown;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.timers.setTimeout(
        () => reject(new OutpostError('STOP_TIMEOUT', `services did not stop within ${this.options.stopTimeoutMs} ms`)),
        this.options.stopTimeoutMs,
      );
    });
    try {
      await Promise.race([this.stopStarted(), timeout]);
    } finally {
      this.timers.clearTimeout(timer);
    }
  }

  private async stopStarted(): Promise<void> {
    if (this.watchdogTimer !== undefined) this.timers.clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
    this.closeHardwareWatchdog();
    while (this.started.length > 0) {
      const service = this.started.pop();
      if (!service) break;
      try {
        await service.stop();
      } catch (err) {
        // Keep stopping the rest: one stuck service must not keep the others' files open.
        this.options.log.error('service failed to stop cleanly', { service: service.name, err });
      }
    }
  }

  /**
   * The ping runs on the event loop on purpose: a blocked loop stops the pings and systemd
   * kills us, which is the point. A service making no progress withholds pings the same way, and
   * STATUS= names it, so `systemctl status` says which part was stuck.
   */
  private startWatchdog(): void {
    const intervalMs = this.options.watchdogIntervalMs;
    if (intervalMs === undefined) return;
    this.watchdogTimer = this.timers.setInterval(() => {
      if (!this.feedable()) return;
      this.options.notify({ WATCHDOG: '1' }).catch((err: unknown) => this.options.log.warn('watchdog ping failed', { err }));
    }, intervalMs);
  }

  /** Whether the watchdogs may be fed now; logs and shows the change when it is not. */
  private feedable(): boolean {
    const stalled = this.stalled();
    if (stalled.length > 0) {
      if (!this.withheld) {
        this.options.log.error('withholding watchdog ping: a service makes no progress', { unhealthy: stalled });
        void this.status(`watchdog withheld: ${stalled.join(', ')} not making progress`);
      }
      this.withheld = true;
      return false;
    }
    if (this.withheld) {
      this.options.log.info('watchdog pings resume: every service makes progress again');
      void this.status('running');
    }
    this.withheld = false;
    return true;
  }

  private startHardwareWatchdog(): void {
    const open = this.options.hardwareWatchdog;
    if (open === undefined) return;
    let device: HardwareWatchdog;
    try {
      device = open();
    } catch (err) {
      // Running without it beats not running: the systemd watchdog still guards the daemon.
      this.options.log.error('hardware watchdog unavailable: running without it', { err });
      return;
    }
    const everyMs = Math.max(500, Math.floor((device.timeoutSec * 1000) / 3));
    const timer = this.timers.setInterval(() => {
      if (!this.feedable()) return;
      try {
        device.keepalive();
      } catch (err) {
        this.options.log.error('hardware watchdog keepalive failed', { err });
      }
    }, everyMs);
    this.hardware = { device, timer };
    this.options.log.info('hardware watchdog armed', { device: device.path, timeoutSec: device.timeoutSec });
  }

  private closeHardwareWatchdog(): void {
    if (this.hardware === undefined) return;
    this.timers.clearInterval(this.hardware.timer);
    try {
      this.hardware.device.close({ disarm: true });
    } catch (err) {
      this.options.log.error('hardware watchdog: the magic close failed, so the board may reset', { err });
    }
    this.hardware = undefined;
  }
}
