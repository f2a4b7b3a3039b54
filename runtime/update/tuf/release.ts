/**
 * Outpost's target conventions (docs/architecture.md, "Update metadata"):
 *
 * - A release is the target `releases/<hardware>/<arch>/<version>` with `length: 0` and
 *   `hashes.sha256` = the OSTree commit checksum (OSTree content-addresses the commit itself, so
 *   the target is the commit, not a file), and `custom` = {@link ReleaseCustom}.
 * - A static delta is its own target `deltas/<from>-<to>` with its real length and sha256 and
 *   `custom` = {@link DeltaCustom}; a release lists the deltas that lead to it.
 */
import { z } from 'zod';
import type { TargetInfo } from './trusted-targets.js';

/** CPU architectures outpost ships images for. */
export const releaseArches = ['aarch64', 'x86_64'] as const;
/** A CPU architecture. */
export type ReleaseArch = (typeof releaseArches)[number];

const commit = z.string().regex(/^[0-9a-f]{64}$/, 'must be a 64-character OSTree commit checksum');
/** A hardware class is one target path segment. */
export const hardwareClassSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit');

/** `custom` of a release target. */
export const releaseCustomSchema = z.object({
  ref: z.string().min(1).max(255),
  commit,
  arch: z.enum(releaseArches),
  hardware: hardwareClassSchema,
  /** Monotonic release number; anti-rollback compares these. */
  version: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  deltas: z.array(z.object({ from: commit, target: z.string().min(1) })).max(64),
});
/** `custom` of a release target. */
export type ReleaseCustom = z.infer<typeof releaseCustomSchema>;

/** `custom` of a static delta target. */
export const deltaCustomSchema = z.object({ kind: z.literal('ostree-static-delta'), from: commit, to: commit });
/** `custom` of a static delta target. */
export type DeltaCustom = z.infer<typeof deltaCustomSchema>;

/** The target name of a release. */
export function releaseTargetName(hardware: string, arch: ReleaseArch, version: number): string {
  return `releases/${hardware}/${arch}/${version}`;
}

/** The target name of a static delta from one commit to another. */
export function deltaTargetName(from: string, to: string): string {
  return `deltas/${from}-${to}`;
}

/** A release target whose name, hash and custom fields agree with each other. */
export interface Release {
  readonly target: TargetInfo;
  readonly custom: ReleaseCustom;
}

/**
 * Reads a release target, or says why it is not a well-formed one. Name, hash and custom fields
 * must agree, so a signer's typo cannot point a device at a commit other than the one named.
 */
export function parseRelease(target: TargetInfo): { ok: true; release: Release } | { ok: false; reason: string } {
  const custom = releaseCustomSchema.safeParse(target.custom);
  if (!custom.success) return { ok: false, reason: `${target.name}: custom fields: ${custom.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
  const c = custom.data;
  const expectedName = releaseTargetName(c.hardware, c.arch, c.version);
  if (target.name !== expectedName) return { ok: false, reason: `${target.name}: its custom fields describe ${expectedName}` };
  if (target.hashes.sha256 !== c.commit) return { ok: false, reason: `${target.name}: hashes.sha256 is not custom.commit` };
  return { ok: true, release: { target, custom: c } };
}

/** Well-formed releases for one hardware class and architecture, highest version first. */
export function releasesFor(targets: readonly TargetInfo[], hardware: string, arch: ReleaseArch): Release[] {
  return releaseTargetsFor(targets, hardware, arch).releases;
}

/**
 * The release targets for one hardware class and architecture: the well-formed ones, highest
 * version first, and why each other one is not (signed, yet unusable: the operator must hear of it).
 */
export function releaseTargetsFor(targets: readonly TargetInfo[], hardware: string, arch: ReleaseArch): { releases: Release[]; malformed: string[] } {
  const prefix = `releases/${hardware}/${arch}/`;
  const releases: Release[] = [];
  const malformed: string[] = [];
  for (const target of targets) {
    if (!target.name.startsWith(prefix)) continue;
    const parsed = parseRelease(target);
    if (parsed.ok) releases.push(parsed.release);
    else malformed.push(parsed.reason);
  }
  return { releases: releases.sort((a, b) => b.custom.version - a.custom.version), malformed };
}
