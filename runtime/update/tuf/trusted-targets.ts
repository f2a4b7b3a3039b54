/** The result of a successful TUF refresh: the targets a device may act on, read-only. */
import type { TargetsSigned } from './schema.js';

/** One target as verified targets metadata describes it. */
export interface TargetInfo {
  readonly name: string;
  readonly length: number;
  readonly hashes: Readonly<Record<string, string>>;
  /** The application's fields (`{}` when the target has none). */
  readonly custom: Readonly<Record<string, unknown>>;
}

/** Verified top-level targets metadata, with the versions of the chain that vouched for it. */
export class TrustedTargets {
  private readonly byName: ReadonlyMap<string, TargetInfo>;
  /** When the targets metadata expires. */
  readonly expires: Date;

  constructor(
    targets: Readonly<TargetsSigned>,
    /** Versions of the trusted root, timestamp, snapshot and targets metadata. */
    readonly versions: Readonly<{ root: number; timestamp: number; snapshot: number; targets: number }>,
    /** The one reference time expiry was judged against in this refresh (spec §5.1). */
    readonly referenceTime: Date,
    /** The trusted root's `consistent_snapshot`: target files are served under their hash (§5.7.3). */
    readonly consistentSnapshot = false,
  ) {
    this.expires = new Date(targets.expires);
    this.byName = new Map(
      Object.entries(targets.targets)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([name, file]) => [name, Object.freeze({ name, length: file.length, hashes: file.hashes, custom: file.custom ?? {} })]),
    );
  }

  /** Every target, sorted by name. */
  list(): TargetInfo[] {
    return [...this.byName.values()];
  }

  /** One target by name. */
  get(name: string): TargetInfo | undefined {
    return this.byName.get(name);
  }

  /**
   * Where the repository serves a target's file, below `targets/`: with consistent snapshots
   * `dir/<hash>.name`, under one of the hashes the target lists (spec §5.7.3): sha256 when listed.
   */
  filePath(target: TargetInfo): string {
    const hash = target.hashes.sha256 ?? Object.values(target.hashes)[0];
    if (!this.consistentSnapshot || hash === undefined) return target.name;
    const slash = target.name.lastIndexOf('/');
    return `${target.name.slice(0, slash + 1)}${hash}.${target.name.slice(slash + 1)}`;
  }
}
