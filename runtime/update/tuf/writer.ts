/**
 * The repository side of TUF, used by `outpostctl`: a directory of top-level metadata that any
 * static web server, object store or CDN can serve (devices verify everything).
 *
 * Layout: `root.json` (newest root) and `N.root.json` for every root version (the chain devices
 * walk, spec §5.3), `timestamp.json`, `snapshot.json`, `targets.json`. Consistent snapshots are
 * off (spec §7): a client racing a publish may see a hash mismatch and simply retries later.
 *
 * Invariants:
 * - Every write is atomic (tmp + fsync + rename), in the order targets → snapshot → timestamp, and
 *   `N.root.json` before `root.json`, so a reader never sees a reference to a file not yet there.
 * - Nothing is written that the device client would reject: each file is re-parsed with the
 *   client's schema and size limits and checked against the thresholds of the root that signs it.
 * - Signing keys must be authorized for the role in the current root; the writer refuses to sign
 *   with a revoked key rather than publish metadata devices will reject.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../../errors.js';
import { writeFileAtomic } from '../../platform/index.js';
import { canonicalize, CanonicalJsonError, type PrivateKey, type PublicKey } from '../../trust/index.js';
import { defaultMetadataMaxBytes, parseMetadata, SPEC_VERSION, targetFileSchema, targetNameSchema, type RootSigned, type SignedByRole, type TargetFile, type TopRole } from './schema.js';
import { serializeMetadata, signMetadata } from './sign.js';
import { requireThreshold, sha256Hex } from './verify.js';

const dayMs = 86_400_000;
/** Default lifetimes per role: root 365 days, targets 90, snapshot 7, timestamp 1. */
export const defaultExpiryMs: Readonly<Record<TopRole, number>> = Object.freeze({ root: 365 * dayMs, targets: 90 * dayMs, snapshot: 7 * dayMs, timestamp: dayMs });

/** One key or several (for roles with a threshold above 1). */
export type SigningKeys = PrivateKey | readonly PrivateKey[];

/** A target to add or replace. `custom` must be canonical-JSON-able (no floats, no undefined). */
export interface TargetInput {
  length: number;
  hashes: Record<string, string>;
  custom?: Record<string, unknown>;
}

/** Keys and options for {@link initRepository}. */
export interface InitRepositoryOptions {
  rootKeys: readonly PrivateKey[];
  /** Root signature threshold (default 1). The other roles use threshold 1. */
  rootThreshold?: number;
  targetsKey: SigningKeys;
  snapshotKey: SigningKeys;
  timestampKey: SigningKeys;
  expiresMs?: Partial<Record<TopRole, number>>;
  now?: () => Date;
}

/** Keys and options for {@link Repository.publish}. */
export interface PublishOptions {
  targetsKey: SigningKeys;
  snapshotKey: SigningKeys;
  timestampKey: SigningKeys;
  /** Lifetimes overriding {@link defaultExpiryMs} for this publish. */
  expiresMs?: Partial<Record<'targets' | 'snapshot' | 'timestamp', number>>;
}

/** Versions written by a publish. */
export interface PublishResult {
  targets: number;
  snapshot: number;
  timestamp: number;
}

const keyList = (keys: SigningKeys): readonly PrivateKey[] => (Array.isArray(keys) ? (keys as readonly PrivateKey[]) : [keys as PrivateKey]);
const isoSeconds = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** An open TUF repository directory. Target edits are in memory until {@link Repository.publish}. */
export class Repository {
  private readonly staged: Map<string, TargetFile>;

  private constructor(
    /** The repository directory. */
    readonly dir: string,
    private current: SignedByRole,
    private readonly now: () => Date,
  ) {
    this.staged = new Map(Object.entries(current.targets.targets));
  }

  /** Opens an existing repository (as written by {@link initRepository}). */
  static async open(dir: string, options: { now?: () => Date } = {}): Promise<Repository> {
    const read = async <R extends TopRole>(role: R): Promise<SignedByRole[R]> => {
      const file = join(dir, `${role}.json`);
      let bytes: Uint8Array;
      try {
        bytes = await readFile(file);
      } catch (err) {
        throw new OutpostError('UPDATE_METADATA_INVALID', `cannot read ${file}: ${(err as Error).message} (is ${dir} a repository made by outpostctl repo init?)`, { cause: err });
      }
      return structuredClone(parseMetadata(role, bytes, defaultMetadataMaxBytes[role], file).signed) as SignedByRole[R];
    };
    const current = { root: await read('root'), timestamp: await read('timestamp'), snapshot: await read('snapshot'), targets: await read('targets') };
    return new Repository(dir, current, options.now ?? (() => new Date()));
  }

  /** @internal Used by {@link initRepository} to start from an empty state. */
  static fresh(dir: string, current: SignedByRole, now: () => Date): Repository {
    return new Repository(dir, current, now);
  }

  /** The current root's signed part (a copy). */
  get root(): RootSigned {
    return structuredClone(this.current.root);
  }

  /** Versions of the metadata currently on disk. */
  get versions(): Record<TopRole, number> {
    return { root: this.current.root.version, timestamp: this.current.timestamp.version, snapshot: this.current.snapshot.version, targets: this.current.targets.version };
  }

  /** Where a target's file is stored by convention (`DIR/targets/<name>`), for release tooling. */
  targetPath(name: string): string {
    return join(this.dir, 'targets', ...targetNameSchema.parse(name).split('/'));
  }

  /** Every target as it will be published (staged edits included), sorted by name. */
  listTargets(): { name: string; file: TargetFile }[] {
    return [...this.staged.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, file]) => ({ name, file: structuredClone(file) }));
  }

  /** One target (staged edits included). */
  getTarget(name: string): TargetFile | undefined {
    const file = this.staged.get(name);
    return file && structuredClone(file);
  }

  /** Adds or replaces a target (in memory until publish). Invalid names or fields are USAGE errors. */
  addTarget(name: string, input: TargetInput): void {
    const validName = targetNameSchema.safeParse(name);
    if (!validName.success) throw new OutpostError('USAGE', `target name ${JSON.stringify(name)} ${validName.error.issues[0]?.message ?? 'is invalid'}`);
    const file = targetFileSchema.safeParse(input);
    if (!file.success) throw new OutpostError('USAGE', `target ${name}: ${file.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    try {
      canonicalize(input);
    } catch (err) {
      if (err instanceof CanonicalJsonError) throw new OutpostError('USAGE', `target ${name}: ${err.message}`, { cause: err });
      throw err;
    }
    this.staged.set(name, structuredClone(input.custom === undefined ? { length: input.length, hashes: input.hashes } : input));
  }

  /** Removes a target (in memory until publish); false when there was none. */
  removeTarget(name: string): boolean {
    return this.staged.delete(name);
  }

  /**
   * Re-signs targets → snapshot → timestamp, each one version up with a fresh expiry, and writes
   * them. Call it after target edits and after a key change in root.
   */
  async publish(options: PublishOptions): Promise<PublishResult> {
    const now = this.now().getTime();
    const expiry = { ...defaultExpiryMs, ...options.expiresMs };
    const keys = {
      targets: this.authorized('targets', options.targetsKey),
      snapshot: this.authorized('snapshot', options.snapshotKey),
      timestamp: this.authorized('timestamp', options.timestampKey),
    };
    const base = (version: number, role: TopRole) => ({ spec_version: SPEC_VERSION, version: version + 1, expires: isoSeconds(now + expiry[role]) });
    const targets = { _type: 'targets' as const, ...base(this.current.targets.version, 'targets'), targets: Object.fromEntries(this.listTargets().map((t) => [t.name, t.file])) };
    const targetsBytes = this.sealed('targets', targets, keys.targets);
    const snapshot = { _type: 'snapshot' as const, ...base(this.current.snapshot.version, 'snapshot'), meta: { 'targets.json': metaFor(targets.version, targetsBytes) } };
    const snapshotBytes = this.sealed('snapshot', snapshot, keys.snapshot);
    const timestamp = { _type: 'timestamp' as const, ...base(this.current.timestamp.version, 'timestamp'), meta: { 'snapshot.json': metaFor(snapshot.version, snapshotBytes) } };
    const timestampBytes = this.sealed('timestamp', timestamp, keys.timestamp);
    await this.write('targets.json', targetsBytes);
    await this.write('snapshot.json', snapshotBytes);
    await this.write('timestamp.json', timestampBytes);
    this.current = { ...this.current, targets, snapshot, timestamp };
    return { targets: targets.version, snapshot: snapshot.version, timestamp: timestamp.version };
  }

  /**
   * Re-signs only the online roles: the timestamp (and the snapshot when `snapshotKey` is given),
   * one version up with a fresh expiry, for the same targets. Run it before they expire (timestamp
   * daily by default) so devices do not see a freeze. `above` names versions signed elsewhere (an
   * offline bundle's copy): the new ones go past them, so a device that trusted that copy does not
   * take this repository for a rollback.
   */
  async refresh(options: { timestampKey: SigningKeys; snapshotKey?: SigningKeys; expiresMs?: Partial<Record<'snapshot' | 'timestamp', number>>; above?: Pick<PublishResult, 'snapshot' | 'timestamp'> }): Promise<PublishResult> {
    const now = this.now().getTime();
    const expiry = { ...defaultExpiryMs, ...options.expiresMs };
    const timestampKeys = this.authorized('timestamp', options.timestampKey);
    const next = (role: 'snapshot' | 'timestamp') => Math.max(this.current[role].version, options.above?.[role] ?? 0) + 1;
    let snapshot = this.current.snapshot;
    let snapshotBytes: Uint8Array | undefined;
    if (options.snapshotKey !== undefined) {
      snapshot = { ...snapshot, spec_version: SPEC_VERSION, version: next('snapshot'), expires: isoSeconds(now + expiry.snapshot) };
      snapshotBytes = this.sealed('snapshot', snapshot, this.authorized('snapshot', options.snapshotKey));
    } else {
      snapshotBytes = await readFile(join(this.dir, 'snapshot.json'));
    }
    const timestamp = { _type: 'timestamp' as const, spec_version: SPEC_VERSION, version: next('timestamp'), expires: isoSeconds(now + expiry.timestamp), meta: { 'snapshot.json': metaFor(snapshot.version, snapshotBytes) } };
    const timestampBytes = this.sealed('timestamp', timestamp, timestampKeys);
    if (options.snapshotKey !== undefined) await this.write('snapshot.json', snapshotBytes);
    await this.write('timestamp.json', timestampBytes);
    this.current = { ...this.current, snapshot, timestamp };
    return { targets: this.current.targets.version, snapshot: snapshot.version, timestamp: timestamp.version };
  }

  /**
   * Root key rotation (spec §6.1 "Key management and migration"): a new root version whose root
   * role is `newKeys`, signed by a threshold of the current root keys (`oldKeys`) and of the new
   * ones, so devices can walk the chain. Returns the new root.
   */
  async rotateRoot(options: { oldKeys: readonly PrivateKey[]; newKeys: readonly PrivateKey[]; threshold?: number; expiresMs?: number }): Promise<RootSigned> {
    const threshold = options.threshold ?? this.current.root.roles.root.threshold;
    const roles = { ...this.current.root.roles, root: { keyids: unique(options.newKeys.map((k) => k.keyid)), threshold } };
    return this.writeRoot(roles, options.newKeys, [...options.oldKeys, ...options.newKeys], options.expiresMs);
  }

  /**
   * Replaces keys of a non-root role in a new root version (e.g. revoking a compromised targets
   * key), signed by `rootKeys`. Publish afterwards with the role's new key so devices get metadata
   * the new root accepts.
   */
  async replaceRoleKeys(options: { role: Exclude<TopRole, 'root'>; revoke?: readonly string[]; add?: readonly PublicKey[]; threshold?: number; rootKeys: readonly PrivateKey[]; expiresMs?: number }): Promise<RootSigned> {
    const role = this.current.root.roles[options.role];
    for (const id of options.revoke ?? []) {
      if (!role.keyids.includes(id)) throw new OutpostError('USAGE', `key ${id} is not a ${options.role} key in root v${this.current.root.version} (keys: ${role.keyids.join(', ')})`);
    }
    const keyids = unique([...role.keyids.filter((id) => !(options.revoke ?? []).includes(id)), ...(options.add ?? []).map((k) => k.keyid)]);
    const roles = { ...this.current.root.roles, [options.role]: { keyids, threshold: options.threshold ?? role.threshold } };
    return this.writeRoot(roles, options.add ?? [], options.rootKeys, options.expiresMs);
  }

  private async writeRoot(roles: RootSigned['roles'], newKeys: readonly PublicKey[], signers: readonly PrivateKey[], expiresMs?: number): Promise<RootSigned> {
    const old = this.current.root;
    for (const [name, role] of Object.entries(roles)) {
      if (role.keyids.length < role.threshold) throw new OutpostError('USAGE', `the ${name} role would have ${role.keyids.length} key(s), fewer than its threshold ${role.threshold}: add keys or lower the threshold`);
    }
    const known = new Map<string, RootSigned['keys'][string]>(Object.entries(old.keys));
    for (const key of newKeys) known.set(key.keyid, key.key);
    const keys: RootSigned['keys'] = {};
    for (const id of unique(Object.values(roles).flatMap((r) => r.keyids)).sort()) {
      const key = known.get(id);
      if (!key) throw new OutpostError('USAGE', `no public key known for key id ${id}`);
      keys[id] = key;
    }
    const root: RootSigned = {
      _type: 'root',
      spec_version: SPEC_VERSION,
      version: old.version + 1,
      expires: isoSeconds(this.now().getTime() + (expiresMs ?? defaultExpiryMs.root)),
      consistent_snapshot: false,
      keys,
      roles,
    };
    const bytes = serializeMetadata(signMetadata(root, signers));
    const parsed = parseMetadata('root', bytes, defaultMetadataMaxBytes.root, `${root.version}.root.json`);
    // Exactly what devices check in §5.3.4: a threshold of the old root and of the new one.
    requireThreshold(old, 'root', parsed, `${root.version}.root.json`, `root v${old.version}`);
    requireThreshold(root, 'root', parsed, `${root.version}.root.json`, `its own root role`);
    await this.write(`${root.version}.root.json`, bytes);
    await this.write('root.json', bytes);
    this.current = { ...this.current, root };
    return structuredClone(root);
  }

  /** The keys for `role`, refusing any the current root does not authorize. */
  private authorized(role: TopRole, keys: SigningKeys): readonly PrivateKey[] {
    const list = keyList(keys);
    const allowed = this.current.root.roles[role].keyids;
    for (const key of list) {
      if (!allowed.includes(key.keyid)) throw new OutpostError('UPDATE_SIGNATURE', `key ${key.keyid} is not a ${role} key in root v${this.current.root.version} (revoked, or the wrong key file)`);
    }
    return list;
  }

  /** Signs, serializes and checks one file the way a device will (size, schema, threshold). */
  private sealed<R extends Exclude<TopRole, 'root'>>(role: R, signed: SignedByRole[R], keys: readonly PrivateKey[]): Uint8Array {
    const bytes = serializeMetadata(signMetadata(signed, keys));
    const parsed = parseMetadata(role, bytes, defaultMetadataMaxBytes[role], `${role}.json`);
    requireThreshold(this.current.root, role, parsed, `${role}.json`);
    return bytes;
  }

  private async write(name: string, bytes: Uint8Array): Promise<void> {
    try {
      await writeFileAtomic(join(this.dir, name), bytes, { mode: 0o644 });
    } catch (err) {
      throw new OutpostError('UPDATE_METADATA_INVALID', `cannot write ${join(this.dir, name)}: ${(err as Error).message}`, { cause: err });
    }
  }
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}

function metaFor(version: number, bytes: Uint8Array) {
  return { version, length: bytes.length, hashes: { sha256: sha256Hex(bytes) } };
}

/** Opens an existing repository directory. */
export function openRepository(dir: string, options: { now?: () => Date } = {}): Promise<Repository> {
  return Repository.open(dir, options);
}

/**
 * Creates a repository in `dir` (created if missing; refused if it already has root.json):
 * root v1 (`root.json` + `1.root.json`) and empty targets, snapshot and timestamp at version 1.
 */
export async function initRepository(dir: string, options: InitRepositoryOptions): Promise<Repository> {
  const now = options.now ?? (() => new Date());
  const exists = await readFile(join(dir, 'root.json')).then(
    () => true,
    () => false,
  );
  if (exists) throw new OutpostError('USAGE', `${dir} already holds a TUF repository (root.json exists)`);
  if (options.rootKeys.length === 0) throw new OutpostError('USAGE', 'a repository needs at least one root key');
  await mkdir(dir, { recursive: true });
  const at = now().getTime();
  const expiry = { ...defaultExpiryMs, ...options.expiresMs };
  const role = (keys: SigningKeys, threshold = 1) => ({ keyids: unique(keyList(keys).map((k) => k.keyid)), threshold });
  const all = [...options.rootKeys, ...keyList(options.targetsKey), ...keyList(options.snapshotKey), ...keyList(options.timestampKey)];
  // Version 0 placeholders: publish() and writeRoot() bump every role to version 1.
  const zero = (r: TopRole) => ({ spec_version: SPEC_VERSION, version: 0, expires: isoSeconds(at + expiry[r]) });
  const bootstrap: RootSigned = {
    _type: 'root',
    ...zero('root'),
    consistent_snapshot: false,
    keys: Object.fromEntries(all.map((k) => [k.keyid, k.key])),
    roles: { root: role(options.rootKeys, options.rootThreshold ?? 1), timestamp: role(options.timestampKey), snapshot: role(options.snapshotKey), targets: role(options.targetsKey) },
  };
  const repo = Repository.fresh(
    dir,
    { root: bootstrap, timestamp: { _type: 'timestamp', ...zero('timestamp'), meta: { 'snapshot.json': { version: 1 } } }, snapshot: { _type: 'snapshot', ...zero('snapshot'), meta: { 'targets.json': { version: 1 } } }, targets: { _type: 'targets', ...zero('targets'), targets: {} } },
    now,
  );
  // Root v1 is self-signed: the bootstrap (v0, never written) has the same root role.
  await repo.rotateRoot({ oldKeys: options.rootKeys, newKeys: options.rootKeys, threshold: options.rootThreshold ?? 1, expiresMs: expiry.root });
  await repo.publish({ targetsKey: options.targetsKey, snapshotKey: options.snapshotKey, timestampKey: options.timestampKey, expiresMs: expiry });
  return repo;
}
