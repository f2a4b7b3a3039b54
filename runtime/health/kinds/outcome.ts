import type { CheckOutcome } from '../probe.js';

/**
 * Collects what one run found across several limits (a memory check may have three): the run
 * fails if any limit failed, its detail names every failing limit, and the measurements carry
 * every number looked at, passing or not.
 */
export class Findings {
  private readonly failures: string[] = [];
  private readonly notes: string[] = [];
  private readonly numbers: Record<string, number> = {};
  private isProvisional = false;
  private isUnmeasured = false;

  fail(detail: string): void {
    this.failures.push(detail);
  }

  note(detail: string): void {
    this.notes.push(detail);
  }

  /** A failure to look, not a finding (probe.ts `unmeasured`). */
  unmeasured(detail: string): void {
    this.failures.push(detail);
    this.isUnmeasured = true;
  }

  /** A pass that is no verdict yet (probe.ts `provisional`). */
  provisional(why: string): void {
    this.notes.push(why);
    this.isProvisional = true;
  }

  measure(values: Record<string, number | undefined>): void {
    for (const [key, value] of Object.entries(values)) if (value !== undefined) this.numbers[key] = value;
  }

  outcome(): CheckOutcome {
    const ok = this.failures.length === 0;
    const details = ok ? this.notes : this.failures;
    return {
      ok,
      ...(details.length === 0 ? {} : { detail: details.join('; ') }),
      ...(Object.keys(this.numbers).length === 0 ? {} : { measurements: Object.freeze({ ...this.numbers }) }),
      ...(ok && this.isProvisional ? { provisional: true as const } : {}),
      ...(!ok && this.isUnmeasured ? { unmeasured: true as const } : {}),
    };
  }
}

/** Rounds a measurement to two decimals, so events carry 97.53 rather than 97.53012048192771. */
export function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
