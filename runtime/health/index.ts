/** Health: checks on a schedule, remediation under backoff and the reboot breaker, reports. */
export { HealthService, summarize, type HealthEvent, type HealthReport, type HealthServiceOptions, type HealthStatus } from './service.js';
export type { CheckState, CheckStatus } from './scheduler.js';
export type { RebootBreakerState } from './breaker.js';
