import type { Exec } from '../../platform/index.js';
import type { HealthCheckConfig } from '../../config/index.js';

/** What the probes read and run: injected so tests point them at temp dirs, stand-ins and a fake clock (STYLE 8). */
export interface ProbeDeps {
  /** Runs `systemctl` and `exec` checks; no shell. */
  exec: Exec;
  /** The cgroup v2 mount (config `health.cgroupRoot`, /sys/fs/cgroup on a gateway). */
  cgroupRoot: string;
  /** Default `/proc`. */
  procRoot?: string;
  /** Default `/sys/class/thermal`. */
  thermalRoot?: string;
  /** CLOCK_MONOTONIC in ms (platform `monotonicMs`): rates and windows must not jump with the wall clock. */
  monotonicMs: () => number;
  /** MQTT link: connected now, and CLOCK_MONOTONIC ms when it was last connected (undefined: never). */
  link?: () => { connected: boolean; lastConnectedMs: number | undefined };
}

/** The configuration of one kind of check. */
export type CheckOf<K extends HealthCheckConfig['kind']> = Extract<HealthCheckConfig, { kind: K }>;
