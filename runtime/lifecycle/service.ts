/** A long-running part of the daemon, started in order and stopped in reverse. */
export interface Service {
  readonly name: string;
  /** Resolves once the service is up; must not wait for the network (offline is normal). */
  start(): Promise<void>;
  /** Releases everything the service holds; must be safe to call after a failed start. */
  stop(): Promise<void>;
  /**
   * Progress-based health for the watchdog (STYLE 11): false when the service is stuck.
   * Services that cannot get stuck omit it.
   */
  healthy?(): boolean;
}

/** Sends sd_notify(3) fields; the platform notifier or a test double. */
export type Notify = (fields: Record<string, string>) => Promise<void>;
