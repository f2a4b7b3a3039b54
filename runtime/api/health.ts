/** The `GET /v1/health` document, as the CLI validates and shows it. */
import { z } from 'zod';

/** Schema of the health report (health/service.ts `HealthReport`), checked where the CLI receives it. */
export const healthReportSchema = z.object({
  status: z.enum(['unknown', 'ok', 'degraded', 'failed']),
  checks: z.array(
    z.object({
      name: z.string(),
      severity: z.enum(['required', 'wanted']),
      status: z.enum(['unknown', 'passing', 'failing']),
      since: z.string(),
      lastRunAt: z.string().optional(),
      detail: z.string().optional(),
      measurements: z.record(z.string(), z.number()).optional(),
    }),
  ),
  rebootBreaker: z.object({ open: z.boolean(), recent: z.number(), maxReboots: z.number(), windowSec: z.number(), reason: z.string().optional() }),
  safeMode: z.string().optional(),
  attention: z.string().optional(),
});

/** The health report. */
export type HealthReportDocument = z.infer<typeof healthReportSchema>;

/**
 * `outpost health`'s exit code: 0 ok or degraded, 1 when a required check fails (so it can serve
 * as a greenboot required check itself), 75 (try again later) before the first verdicts.
 */
export function healthExitCode(report: HealthReportDocument): number {
  if (report.status === 'failed') return 1;
  return report.status === 'unknown' ? 75 : 0;
}

/** Renders the report for people. */
export function formatHealth(report: HealthReportDocument): string {
  const mark = { passing: 'ok  ', failing: 'FAIL', unknown: '... ' } as const;
  const lines = [`health: ${report.status}`];
  if (report.safeMode) lines.push(`safe mode: ${report.safeMode}`);
  if (report.attention) lines.push(`needs attention: ${report.attention}`);
  const breaker = report.rebootBreaker;
  lines.push(`reboot breaker: ${breaker.open ? 'open' : 'closed'} (${breaker.recent} of ${breaker.maxReboots} remediation reboots within ${breaker.windowSec} s)`);
  if (report.checks.length === 0) lines.push('no checks configured');
  for (const check of report.checks) {
    const measured = check.measurements ? ` [${Object.entries(check.measurements).map(([k, v]) => `${k}=${v}`).join(' ')}]` : '';
    lines.push(`${mark[check.status]} ${check.name} (${check.severity}) since ${check.since}${check.detail ? `: ${check.detail}` : ''}${measured}`);
  }
  return lines.join('\n');
}
