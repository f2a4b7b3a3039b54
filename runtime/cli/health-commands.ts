/** `outpost health ...`: what the running daemon's health checks say, and the breaker's reset. */
import { apiRequest, formatHealth, healthExitCode, healthReportSchema, type HealthReportDocument } from '../api/index.js';
import { OutpostError } from '../errors.js';
import type { Command, CommandContext, OptionSpec } from './command.js';

async function fetchReport(socket: string, method: 'GET' | 'POST', path: string): Promise<HealthReportDocument> {
  const parsed = healthReportSchema.safeParse(await apiRequest(socket, method, path));
  if (!parsed.success) throw new OutpostError('API_BAD_RESPONSE', `unexpected health report from ${socket}: ${parsed.error.issues[0]?.message ?? ''}`);
  return parsed.data;
}

export function healthCommands(options: { config: OptionSpec; socket: OptionSpec }, socketOf: (ctx: CommandContext) => string): Command[] {
  const json: OptionSpec = { type: 'boolean', description: 'print the report as JSON' };
  return [
    {
      name: 'health',
      summary: 'show the health checks and their state',
      options: { ...options, json },
      details: 'Exit code: 0 ok or degraded (a wanted check fails), 1 failed (a required check fails), 75 before the first verdicts. So `outpost health` can itself serve as a greenboot required check.',
      run: async (ctx) => {
        const report = await fetchReport(socketOf(ctx), 'GET', '/v1/health');
        ctx.out(ctx.values.json === true ? JSON.stringify(report, null, 2) : formatHealth(report));
        return healthExitCode(report);
      },
    },
    {
      name: 'health reset-breaker',
      summary: 'close the reboot circuit breaker, allowing remediation reboots again',
      options: { ...options, json },
      run: async (ctx) => {
        const report = await fetchReport(socketOf(ctx), 'POST', '/v1/health/reset-breaker');
        ctx.out(ctx.values.json === true ? JSON.stringify(report, null, 2) : formatHealth(report));
        return 0;
      },
    },
  ];
}
