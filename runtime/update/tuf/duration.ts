/** Durations as operators type them (`90d`, `12h`, `30m`, `45s`) for metadata expiry options. */
import { OutpostError } from '../../errors.js';

const unitMs = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Milliseconds in `text` ("30d", "12h", "30m", "45s"); a USAGE error names what was wrong. */
export function parseDurationMs(text: string): number {
  const match = /^([1-9]\d{0,5})([smhd])$/.exec(text.trim());
  const unit = match?.[2] as keyof typeof unitMs | undefined;
  if (!match || unit === undefined) throw new OutpostError('USAGE', `"${text}" is not a duration: use a positive whole number and a unit, e.g. 30d, 12h, 30m, 45s`);
  return Number(match[1]) * unitMs[unit];
}
