/** Lifecycle: ordered start/stop of services, sd_notify READY/STATUS/STOPPING, watchdog pings. */
export { Supervisor, realTimers, type SupervisorOptions, type Timers } from './supervisor.js';
export type { Service, Notify } from './service.js';
export { markRunning, markStopped, uncleanStopMessage, type UncleanStop } from './run-marker.js';
export { loopLagMonitor, type LoopLagOptions } from './loop-lag.js';
