/**
 * The device-side TUF client: the detailed client workflow of the TUF 1.0 spec (§5), top-level
 * roles only (delegations are not followed; outpost's repositories do not use them).
 *
 * Invariants:
 * - One reference time per refresh (§5.1): max(wall clock, persisted "not earlier than"). Gateways
 *   often have no RTC, so a clock set back must not revive expired metadata (freeze attack).
 * - The "not earlier than" time only moves forward, and only after a fully successful refresh, to
 *   that refresh's reference time. A successful refresh means the timestamp (1 day by default) had
 *   not expired at that time, so a clock running far ahead cannot push it far (it fails instead).
 * - Each role is persisted only after every check on it passed (§5.3.8, §5.4.5, §5.5.7, §5.6.6),
 *   so rejected input never replaces trusted state. A refresh that fails part way leaves earlier
 *   roles updated (the spec's order), which the next refresh builds on.
 * - Trusted metadata from the store is re-verified against the current root before use (keys may
 *   have been rotated or revoked); an entry that no longer verifies is ignored, never the root.
 *
 * Every rejection is an OutpostError: UPDATE_SIGNATURE (tampered / untrusted signer),
 * UPDATE_THRESHOLD (too few signers), UPDATE_ROLLBACK (version went backwards), UPDATE_EXPIRED
 * (freeze), UPDATE_METADATA_INVALID (malformed, oversize, inconsistent versions), UPDATE_UNAVAILABLE
 * (the repository could not be reached or lacks timestamp.json; transient).
 */
import { z } from 'zod';
import { isOutpostError, OutpostError } from '../../errors.js';
import type { Logger } from '../../logs/index.js';
import type { Collection, Store } from '../../store/index.js';
import { defaultMetadataMaxBytes, isExpired, parseMetadata, type ParsedMetadata, type RootSigned, type TopRole } from './schema.js';
import { TrustedTargets } from './trusted-targets.js';
import { checkMetaFile, requireThreshold } from './verify.js';

/**
 * Where the client reads repository metadata from: an HTTP mirror, an offline bundle, a directory.
 * Paths are relative to the metadata root ("timestamp.json", "3.root.json").
 */
export interface Fetcher {
  /**
   * The file's bytes, or `undefined` when it does not exist (HTTP 404, ENOENT): that is how the
   * root chain (§5.3.3) learns it reached the newest root. A fetcher should stop reading after
   * `maxBytes + 1` bytes and return what it has; the client rejects oversize files itself. Other
   * failures are thrown: OutpostErrors pass through unchanged (use a transient code for network
   * trouble), anything else becomes UPDATE_UNAVAILABLE.
   */
  fetch(path: string, maxBytes: number): Promise<Uint8Array | undefined>;
}

/** Options for {@link TufClient}. */
export interface TufClientOptions {
  store: Store;
  fetcher: Fetcher;
  /** The root shipped in the image, used until the store holds a trusted root (§5.2). */
  initialRoot: Uint8Array;
  now: () => Date;
  log: Logger;
  /** Per-role size limits for metadata without a signed length (defaults: tuf-js's). */
  maxBytes?: Partial<Record<TopRole, number>>;
  /** Most root versions fetched in one refresh (§5.3.3 "Y"); default 256. */
  maxRootRotations?: number;
  /** Called with each new root version once verified, before it is stored (the installer re-walks the chain offline). */
  onRootTrusted?: (version: number, bytes: Uint8Array) => Promise<void>;
}

/** Name of the store collection holding trusted metadata (keys: role names and `not-earlier-than`). */
export const TUF_COLLECTION = 'tuf';
const floorKey = 'not-earlier-than';
const recordSchema = z.union([z.strictObject({ json: z.string() }), z.strictObject({ time: z.iso.datetime() })]);
type TufRecord = z.infer<typeof recordSchema>;
type Md<R extends TopRole> = ParsedMetadata<R>;

/** The stored bytes of a trusted top-level role (what the last refresh kept), or undefined. */
export async function storedRole(store: Store, role: TopRole): Promise<string | undefined> {
  const record = await store.collection(TUF_COLLECTION, recordSchema).get(role);
  return record && 'json' in record ? record.json : undefined;
}

/** Runs TUF refreshes for one repository against one store. */
export class TufClient {
  private readonly collection: Collection<TufRecord>;
  private readonly limits: Record<TopRole, number>;
  private readonly log: Logger;
  private inflight: Promise<TrustedTargets> | undefined;

  constructor(private readonly opts: TufClientOptions) {
    this.collection = opts.store.collection(TUF_COLLECTION, recordSchema);
    this.limits = { ...defaultMetadataMaxBytes, ...opts.maxBytes };
    this.log = opts.log;
  }

  /**
   * Brings trusted metadata up to date (§5.1-§5.6) and returns the verified targets. Concurrent
   * calls share one run. Throws an OutpostError (see the module comment) when anything fails.
   */
  refresh(): Promise<TrustedTargets> {
    this.inflight ??= this.run().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async run(): Promise<TrustedTargets> {
    // §5.1: one fixed reference time for every expiry check of this refresh.
    const wall = this.opts.now();
    const floor = await this.loadFloor();
    const reference = floor !== undefined && floor.getTime() > wall.getTime() ? floor : wall;
    if (reference !== wall) this.log.warn('wall clock is behind the last trusted time; judging expiry by the latter', { wallClock: wall.toISOString(), notEarlierThan: reference.toISOString() });

    const root = await this.updateRoot(await this.loadRoot(), reference);
    const timestamp = await this.updateTimestamp(root, await this.loadLocal('timestamp', root), reference);
    const snapshot = await this.updateSnapshot(root, timestamp, await this.loadLocal('snapshot', root), reference);
    const targets = await this.updateTargets(root, snapshot, await this.loadLocal('targets', root), reference);

    if (floor === undefined || reference.getTime() > floor.getTime()) await this.opts.store.batch().put(this.collection, floorKey, { time: reference.toISOString() }).commit();
    const versions = { root: root.signed.version, timestamp: timestamp.signed.version, snapshot: snapshot.signed.version, targets: targets.signed.version };
    this.log.debug('update metadata verified', { versions, referenceTime: reference.toISOString() });
    return new TrustedTargets(targets.signed, versions, reference, root.signed.consistent_snapshot);
  }

  /**
   * What the store trusts now, offline: the stored targets checked against the stored root, with
   * no expiry judged (what a past refresh verified). For what a device acts on between refreshes
   * while its repository is unreachable, such as who may send it commands; never for installing.
   */
  async stored(): Promise<TrustedTargets | undefined> {
    const root = await this.loadRoot();
    const targets = await this.loadLocal('targets', root);
    if (!targets) return undefined;
    const floor = (await this.loadFloor()) ?? this.opts.now();
    const versions = { root: root.signed.version, timestamp: 0, snapshot: 0, targets: targets.signed.version };
    return new TrustedTargets(targets.signed, versions, floor, root.signed.consistent_snapshot);
  }

  /** The newest reference time a refresh succeeded at: the device's only clock it can trust. */
  notEarlierThan(): Promise<Date | undefined> {
    return this.loadFloor();
  }

  // ---- §5.2 / §5.3: root ---------------------------------------------------------------------

  private async loadRoot(): Promise<Md<'root'>> {
    const stored = await this.collection.get('root');
    if (stored && 'json' in stored) {
      try {
        return parseMetadata('root', new TextEncoder().encode(stored.json), this.limits.root, 'trusted root.json in the store', 'stored');
      } catch (err) {
        // Falling back to the image's root would be a rollback of trust: refuse instead.
        throw new OutpostError('STORE_CORRUPT', `the trusted TUF root in the state store is unreadable: ${(err as Error).message}`, { cause: err });
      }
    }
    const initial = parseMetadata('root', this.opts.initialRoot, this.limits.root, 'initial root.json');
    requireThreshold(initial.signed, 'root', initial, 'initial root.json', 'itself');
    return initial;
  }

  private async updateRoot(start: Md<'root'>, reference: Date): Promise<Md<'root'>> {
    let trusted = start;
    const max = this.opts.maxRootRotations ?? 256;
    for (let i = 0; i < max; i++) {
      // §5.3.3: try N+1; its absence ends the chain.
      const expected = trusted.signed.version + 1;
      const name = `${expected}.root.json`;
      const bytes = await this.fetch(name, this.limits.root);
      if (bytes === undefined) break;
      const next = parseMetadata('root', bytes, this.limits.root, name);
      // §5.3.4: a threshold of the trusted root's root keys AND of the new root's own.
      requireThreshold(trusted.signed, 'root', next, name, `trusted root v${trusted.signed.version}`);
      requireThreshold(next.signed, 'root', next, name, `its own root role`);
      // §5.3.5: the version must be exactly N+1.
      if (next.signed.version < expected) throw new OutpostError('UPDATE_ROLLBACK', `${name}: version ${next.signed.version}, but the trusted root is already v${trusted.signed.version} (rollback attack)`);
      if (next.signed.version > expected) throw new OutpostError('UPDATE_METADATA_INVALID', `${name}: has version ${next.signed.version}, expected ${expected}`);
      // §5.3.7-8 persist; §5.3.11 drop timestamp/snapshot if their keys changed (fast-forward recovery).
      const batch = this.opts.store.batch().put(this.collection, 'root', { json: text(bytes) });
      const rotated = (['timestamp', 'snapshot'] as const).filter((r) => !sameKeys(trusted.signed, next.signed, r));
      if (rotated.length > 0) batch.del(this.collection, 'timestamp').del(this.collection, 'snapshot');
      // The trusted targets' version floor came through snapshots the rotated key signed: recover it too.
      if (rotated.includes('snapshot')) batch.del(this.collection, 'targets');
      // Handed on before it is stored: a crash between the two must not leave a gap in the chain
      // the installer walks (it verifies what it is given in any case).
      await this.opts.onRootTrusted?.(next.signed.version, bytes);
      await batch.commit();
      this.log.info('trusted root updated', { from: trusted.signed.version, to: next.signed.version, rotatedRoles: rotated });
      trusted = next;
    }
    // §5.3.10: freeze attack on root.
    this.requireFresh(trusted, 'root.json', reference);
    return trusted;
  }

  // ---- §5.4: timestamp -----------------------------------------------------------------------

  private async updateTimestamp(root: Md<'root'>, local: Md<'timestamp'> | undefined, reference: Date): Promise<Md<'timestamp'>> {
    const bytes = await this.fetch('timestamp.json', this.limits.timestamp);
    if (bytes === undefined) throw new OutpostError('UPDATE_UNAVAILABLE', 'the update repository has no timestamp.json');
    const next = parseMetadata('timestamp', bytes, this.limits.timestamp, 'timestamp.json');
    requireThreshold(root.signed, 'timestamp', next, 'timestamp.json'); // §5.4.2
    if (local) {
      // §5.4.3.1: never go back; an equal version changes nothing (keep the trusted one).
      if (next.signed.version < local.signed.version) throw rollback('timestamp.json', next.signed.version, local.signed.version);
      // §5.4.3.2: the snapshot it names must not go back either.
      const was = local.signed.meta['snapshot.json'].version;
      const now = next.signed.meta['snapshot.json'].version;
      if (now < was) throw new OutpostError('UPDATE_ROLLBACK', `timestamp.json: names snapshot v${now}, older than the trusted v${was} (rollback attack)`);
      if (next.signed.version === local.signed.version) {
        this.requireFresh(local, 'timestamp.json', reference);
        return local;
      }
    }
    this.requireFresh(next, 'timestamp.json', reference); // §5.4.4
    await this.persist('timestamp', bytes); // §5.4.5
    return next;
  }

  // ---- §5.5: snapshot ------------------------------------------------------------------------

  private async updateSnapshot(root: Md<'root'>, timestamp: Md<'timestamp'>, local: Md<'snapshot'> | undefined, reference: Date): Promise<Md<'snapshot'>> {
    const meta = timestamp.signed.meta['snapshot.json'];
    const referrer = `timestamp v${timestamp.signed.version}`;
    if (local && local.signed.version === meta.version) {
      this.requireFresh(local, 'snapshot.json', reference);
      return local;
    }
    const name = metadataFileName(root, 'snapshot', meta.version);
    const bytes = await this.fetchRequired(name, meta.length ?? this.limits.snapshot);
    checkMetaFile(bytes, meta, name, referrer); // §5.5.2
    const next = parseMetadata('snapshot', bytes, this.limits.snapshot, name);
    requireThreshold(root.signed, 'snapshot', next, 'snapshot.json'); // §5.5.3
    if (local && next.signed.version < local.signed.version) throw rollback('snapshot.json', next.signed.version, local.signed.version);
    // §5.5.4: exactly the version the timestamp vouches for (mix-and-match).
    if (next.signed.version !== meta.version) throw mismatch('snapshot.json', next.signed.version, meta.version, referrer);
    // §5.5.5: no targets metadata listed before may disappear or go back.
    for (const [file, was] of Object.entries(local?.signed.meta ?? {})) {
      const now = next.signed.meta[file];
      if (!now) throw new OutpostError('UPDATE_ROLLBACK', `snapshot.json: no longer lists ${file} (rollback attack)`);
      if (now.version < was.version) throw new OutpostError('UPDATE_ROLLBACK', `snapshot.json: lists ${file} v${now.version}, older than the trusted v${was.version} (rollback attack)`);
    }
    this.requireFresh(next, 'snapshot.json', reference); // §5.5.6
    await this.persist('snapshot', bytes); // §5.5.7
    return next;
  }

  // ---- §5.6: targets -------------------------------------------------------------------------

  private async updateTargets(root: Md<'root'>, snapshot: Md<'snapshot'>, local: Md<'targets'> | undefined, reference: Date): Promise<Md<'targets'>> {
    const meta = snapshot.signed.meta['targets.json'];
    if (!meta) throw new OutpostError('UPDATE_METADATA_INVALID', 'snapshot.json: does not list targets.json');
    const referrer = `snapshot v${snapshot.signed.version}`;
    if (local && local.signed.version === meta.version) {
      this.requireFresh(local, 'targets.json', reference);
      return local;
    }
    const name = metadataFileName(root, 'targets', meta.version);
    const bytes = await this.fetchRequired(name, meta.length ?? this.limits.targets);
    checkMetaFile(bytes, meta, name, referrer); // §5.6.2
    const next = parseMetadata('targets', bytes, this.limits.targets, name);
    requireThreshold(root.signed, 'targets', next, 'targets.json'); // §5.6.3
    if (local && next.signed.version < local.signed.version) throw rollback('targets.json', next.signed.version, local.signed.version);
    if (next.signed.version !== meta.version) throw mismatch('targets.json', next.signed.version, meta.version, referrer); // §5.6.4
    this.requireFresh(next, 'targets.json', reference); // §5.6.5
    await this.persist('targets', bytes); // §5.6.6
    return next;
  }

  // ---- helpers -------------------------------------------------------------------------------

  private requireFresh(md: Md<TopRole>, source: string, reference: Date): void {
    if (!isExpired(md.signed.expires, reference)) return;
    throw new OutpostError(
      'UPDATE_EXPIRED',
      `${source}: v${md.signed.version} expired at ${md.signed.expires} (reference time ${reference.toISOString()}): the repository has not been re-signed (freeze attack?) or the clock is wrong`,
    );
  }

  /** Trusted metadata from the store, if it still verifies under `root` (expiry is judged later). */
  private async loadLocal<R extends 'timestamp' | 'snapshot' | 'targets'>(role: R, root: Md<'root'>): Promise<Md<R> | undefined> {
    const stored = await this.collection.get(role);
    if (!stored || !('json' in stored)) return undefined;
    try {
      const md = parseMetadata(role, new TextEncoder().encode(stored.json), this.limits[role], `trusted ${role}.json in the store`, 'stored');
      requireThreshold(root.signed, role, md, `trusted ${role}.json in the store`);
      return md;
    } catch (err) {
      if (!isOutpostError(err)) throw err;
      // Expected after a key rotation or revocation; the repository's current file replaces it.
      this.log.warn(`ignoring stored ${role} metadata that no longer verifies`, { code: err.code, reason: err.message });
      return undefined;
    }
  }

  private async loadFloor(): Promise<Date | undefined> {
    const stored = await this.collection.get(floorKey);
    return stored && 'time' in stored ? new Date(stored.time) : undefined;
  }

  private async persist(role: TopRole, bytes: Uint8Array): Promise<void> {
    await this.opts.store.batch().put(this.collection, role, { json: text(bytes) }).commit();
  }

  private async fetch(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    try {
      return await this.opts.fetcher.fetch(path, maxBytes);
    } catch (err) {
      if (isOutpostError(err)) throw err;
      throw new OutpostError('UPDATE_UNAVAILABLE', `cannot fetch ${path} from the update repository: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async fetchRequired(path: string, maxBytes: number): Promise<Uint8Array> {
    const bytes = await this.fetch(path, maxBytes);
    if (bytes === undefined) throw new OutpostError('UPDATE_UNAVAILABLE', `the update repository has no ${path}`);
    return bytes;
  }
}

function text(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}

/** §5.5.1, §5.6.1: with consistent snapshots a repository serves `N.snapshot.json` and `N.targets.json`. */
function metadataFileName(root: Md<'root'>, role: 'snapshot' | 'targets', version: number): string {
  return root.signed.consistent_snapshot ? `${version}.${role}.json` : `${role}.json`;
}

function sameKeys(a: RootSigned, b: RootSigned, role: TopRole): boolean {
  const x = [...a.roles[role].keyids].sort();
  const y = [...b.roles[role].keyids].sort();
  return x.length === y.length && x.every((id, i) => id === y[i]);
}

function rollback(source: string, got: number, trusted: number): OutpostError {
  return new OutpostError('UPDATE_ROLLBACK', `${source}: version ${got} is older than the trusted version ${trusted} (rollback attack: replayed old metadata)`);
}

function mismatch(source: string, got: number, expected: number, referrer: string): OutpostError {
  return new OutpostError('UPDATE_METADATA_INVALID', `${source}: version ${got}, but ${referrer} names version ${expected} (mix-and-match)`);
}
