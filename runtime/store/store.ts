/**
 * The state store: LevelDB (classic-level) under the state dir, the one place outpost keeps
 * anything that must survive a crash or power cut.
 *
 * Invariants:
 * - Every write is a synchronous (fsync'd) batch: when `commit()` resolves, the data is on disk,
 *   so callers may act on it (write-ahead, DESIGN principle 2). The one exception is asked for by
 *   name, `commit({ durable: false })`, for a write whose loss to a power cut only repeats work
 *   already safe to repeat: it survives a crash of the process (the page cache has it), not
 *   necessarily a power cut.
 * - Values are JSON and validated against their collection's schema on read; a value that does
 *   not match is reported as corruption, never handed to logic half-parsed.
 * - `meta/schemaVersion` is the store's format version, `meta/readableFrom` the oldest format
 *   whose code can still read and write it. Each migration step writes its data and both versions
 *   in one batch. A newer store that still reads as this code's format is opened as it is (the
 *   newer release only added data); one that does not is refused rather than misread.
 * - /var/lib/outpost is shared by every deployment, and a release on trial may be rolled back to
 *   the one before it (Mender keeps `state-uncommitted` for the same reason): when `holdBreaking`
 *   says so, only steps that keep older releases able to read the store run; the others wait for
 *   an open where it does not. Steps run only while opening, before anyone else can write, so no
 *   writer races a step between what it read and what it commits.
 */
import { cpSync, renameSync, rmSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { z } from 'zod';
import { OutpostError, toOutpostError } from '../errors.js';
import { monotonicMs } from '../platform/index.js';

type Db = ClassicLevel<string, unknown>;
const jsonSublevel = (db: Db, name: string) => db.sublevel<string, unknown>(name, { valueEncoding: 'json' });
type Sub = ReturnType<typeof jsonSublevel>;
type BatchOps = ({ type: 'put'; sublevel: Sub; key: string; value: unknown } | { type: 'del'; sublevel: Sub; key: string })[];

/**
 * A key range of a collection, in key order (string order of the keys' UTF-8 bytes). Bounds are
 * keys, not prefixes: `{ gte: 'a/', lt: 'a0' }` is every key starting with `a/` ('0' follows '/').
 */
export interface RangeOptions {
  gte?: string;
  lt?: string;
  /** At most this many entries (a non-negative integer); all when absent. */
  limit?: number;
  /** From the upper bound down. */
  reverse?: boolean;
}

/** A typed keyspace inside the store. */
export interface Collection<T> {
  readonly name: string;
  get(key: string): Promise<T | undefined>;
  /** All entries in key order; for small collections (state, counters), not log data. */
  entries(): Promise<[string, T][]>;
  /** The entries of a range, validated like entries(); bound it with `limit` on large collections. */
  range(options: RangeOptions): Promise<[string, T][]>;
  /**
   * The entries of a range one at a time, validated as they are read: memory stays flat however
   * large the collection is (queues of 100k entries are counted at start this way).
   */
  iterate(options?: RangeOptions): AsyncIterable<[string, T]>;
  /** The keys of a range one at a time, without reading or validating values. */
  keys(options?: RangeOptions): AsyncIterable<string>;
}

/** An atomic, fsync'd group of writes across collections. */
export interface WriteBatch {
  put<T>(collection: Collection<T>, key: string, value: T): WriteBatch;
  del(collection: Collection<unknown>, key: string): WriteBatch;
  /**
   * Runs `hook` once the batch is written (on disk unless `durable: false`), before `commit()`
   * resolves; not when the commit fails.
   * For modules that add writes to a caller's batch and keep in-memory counters of what is on
   * disk (the link's outbox): the counters move with the data, never ahead of it. A hook that
   * throws is a bug; it cannot undo the commit, so it is reported to `onHookError` when given and
   * otherwise ignored, and the commit still resolves.
   */
  afterCommit(hook: () => void, onHookError?: (err: unknown) => void): WriteBatch;
  /**
   * Writes the batch, fsync'd unless `durable: false`: then a power cut may undo it (never a crash
   * of the process), for writes whose loss only repeats safe work, such as the outbox's removal of
   * a message already acknowledged (it is sent again; QoS 1 allows that).
   */
  commit(options?: { durable?: boolean }): Promise<void>;
}

/** Brings a store from version `from` to `from + 1`, adding its writes to `batch`. */
export interface Migration {
  from: number;
  describe: string;
  /**
   * Whether releases that write `from` can still read and write the store after this step (it
   * only adds data or fields). Steps that cannot are held while a release is on trial.
   */
  keepsOlderReadable: boolean;
  run(ctx: { raw(name: string): Promise<[string, unknown][]>; batch: WriteBatch; collection: <T>(name: string, schema: z.ZodType<T>) => Collection<T> }): Promise<void>;
}

/** What happened while opening, for the caller to log. */
export type OpenEvent =
  | { kind: 'migrated'; from: number; to: number }
  | { kind: 'held'; from: number; describe: string }
  | { kind: 'newer'; version: number; readableFrom: number }
  | { kind: 'repaired'; backup: string };

/** Options for {@link openStore}. */
export interface OpenStoreOptions {
  location: string;
  /** The format version this code writes; migrations must cover every step below it. */
  version: number;
  migrations?: readonly Migration[];
  /**
   * Asked at open, once the store is readable, before the first step older releases cannot read:
   * true holds that step and those after it until a later open (a release is on trial and may be
   * rolled back to the one before).
   */
  holdBreaking?: (store: Store) => Promise<boolean>;
  /** Try LevelDB's repair once on corruption, after keeping a copy of the damaged store. */
  repair?: boolean;
  onEvent?: (event: OpenEvent) => void;
}

const versionKey = 'schemaVersion';
const readableFromKey = 'readableFrom';

class LevelCollection<T> implements Collection<T> {
  constructor(
    readonly name: string,
    readonly sub: Sub,
    private readonly schema: z.ZodType<T>,
  ) {}

  private check(key: string, value: unknown): T {
    const result = this.schema.safeParse(value);
    if (result.success) return result.data;
    throw new OutpostError('STORE_CORRUPT', `store value ${this.name}/${key} does not match its schema: ${result.error.issues[0]?.message ?? 'invalid'}`);
  }

  async get(key: string): Promise<T | undefined> {
    const value = await this.sub.get(key);
    return value === undefined ? undefined : this.check(key, value);
  }

  async entries(): Promise<[string, T][]> {
    const out: [string, T][] = [];
    for await (const [key, value] of this.sub.iterator()) out.push([key, this.check(key, value)]);
    return out;
  }

  async range(options: RangeOptions): Promise<[string, T][]> {
    const out: [string, T][] = [];
    for await (const entry of this.iterate(options)) out.push(entry);
    return out;
  }

  async *iterate(options: RangeOptions = {}): AsyncIterable<[string, T]> {
    for await (const [key, value] of this.sub.iterator(this.levelRange(options))) yield [key, this.check(key, value)];
  }

  async *keys(options: RangeOptions = {}): AsyncIterable<string> {
    yield* this.sub.keys(this.levelRange(options));
  }

  /** Checks the options (a caller's bug must not silently read everything) and drops absent fields. */
  private levelRange(options: RangeOptions): { gte?: string; lt?: string; limit?: number; reverse?: boolean } {
    const { gte, lt, limit, reverse } = options;
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) throw new OutpostError('INTERNAL', `range limit on ${this.name} must be a non-negative integer, not ${limit}`);
    return { ...(gte === undefined ? {} : { gte }), ...(lt === undefined ? {} : { lt }), ...(limit === undefined ? {} : { limit }), ...(reverse === undefined ? {} : { reverse }) };
  }
}

/**
 * The commits under way, by when each began on CLOCK_MONOTONIC: a disk that stopped answering
 * shows up as an old one, which the daemon's watchdog reads as the store making no progress.
 */
class CommitsInFlight {
  private readonly startedMs = new Set<{ readonly atMs: number }>();

  async track<T>(write: () => Promise<T>): Promise<T> {
    const entry = { atMs: monotonicMs() };
    this.startedMs.add(entry);
    try {
      return await write();
    } finally {
      this.startedMs.delete(entry);
    }
  }

  oldestMs(): number | undefined {
    // Insertion order is start order.
    for (const entry of this.startedMs) return entry.atMs;
    return undefined;
  }
}

class LevelBatch implements WriteBatch {
  private readonly ops: BatchOps = [];
  private readonly hooks: { hook: () => void; onHookError: ((err: unknown) => void) | undefined }[] = [];
  constructor(
    private readonly db: Db,
    private readonly inFlight: CommitsInFlight,
  ) {}

  private subOf(collection: Collection<unknown>): Sub {
    if (!(collection instanceof LevelCollection)) throw new OutpostError('INTERNAL', `collection ${collection.name} is not from this store`);
    return collection.sub;
  }

  put<T>(collection: Collection<T>, key: string, value: T): WriteBatch {
    this.ops.push({ type: 'put', sublevel: this.subOf(collection as Collection<unknown>), key, value });
    return this;
  }

  del(collection: Collection<unknown>, key: string): WriteBatch {
    this.ops.push({ type: 'del', sublevel: this.subOf(collection), key });
    return this;
  }

  afterCommit(hook: () => void, onHookError?: (err: unknown) => void): WriteBatch {
    this.hooks.push({ hook, onHookError });
    return this;
  }

  async commit({ durable = true }: { durable?: boolean } = {}): Promise<void> {
    if (this.ops.length > 0) {
      try {
        await this.inFlight.track(() => this.db.batch(this.ops, { sync: durable }));
      } catch (err) {
        throw toOutpostError(err, 'STORE_IO', `cannot write the state store at ${this.db.location}`);
      }
    }
    // Taken out first: a second commit() of the same batch must not count the same writes twice.
    for (const { hook, onHookError } of this.hooks.splice(0)) {
      try {
        hook();
      } catch (err) {
        onHookError?.(err);
      }
    }
  }
}

/** An open state store. */
export class Store {
  private readonly inFlight = new CommitsInFlight();

  private constructor(
    private readonly db: Db,
    private readonly options: OpenStoreOptions,
    /** The format version on disk after migrations: this code's, an older one (steps held) or a newer one. */
    private onDisk: number,
  ) {}

  get version(): number {
    return this.onDisk;
  }

  /** Runs the steps from the version on disk up to this code's, each with its versions in one batch. */
  private async runSteps(): Promise<void> {
    const { options, db } = this;
    const meta = jsonSublevel(db, 'meta');
    while (this.onDisk < options.version) {
      const version = this.onDisk;
      const step = options.migrations?.find((m) => m.from === version);
      if (!step) throw new OutpostError('INTERNAL', `no migration from store format version ${version}`);
      if (!step.keepsOlderReadable && (await options.holdBreaking?.(this))) {
        options.onEvent?.({ kind: 'held', from: version, describe: step.describe });
        return;
      }
      const readableFrom = step.keepsOlderReadable ? (versionSchema.safeParse(await meta.get(readableFromKey)).data ?? version) : version + 1;
      const batch = this.batch();
      await step.run({
        raw: async (name) => jsonSublevel(db, name).iterator().all(),
        batch,
        collection: (name, schema) => this.collection(name, schema),
      });
      await versionBatch(db, batch, version + 1, readableFrom).commit();
      options.onEvent?.({ kind: 'migrated', from: version, to: version + 1 });
      this.onDisk = version + 1;
    }
  }

  get location(): string {
    return this.db.location;
  }

  /** A typed collection; values are validated with `schema` on every read. */
  collection<T>(name: string, schema: z.ZodType<T>): Collection<T> {
    if (!/^[a-z][a-z0-9-]*$/.test(name) || name === 'meta') throw new OutpostError('INTERNAL', `invalid collection name "${name}"`);
    return new LevelCollection(name, jsonSublevel(this.db, name), schema);
  }

  batch(): WriteBatch {
    return new LevelBatch(this.db, this.inFlight);
  }

  /** CLOCK_MONOTONIC ms at which the oldest commit still under way began; undefined when none is. */
  oldestPendingCommitMs(): number | undefined {
    return this.inFlight.oldestMs();
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  private static async migrate(db: Db, options: OpenStoreOptions): Promise<Store> {
    const meta = jsonSublevel(db, 'meta');
    const read = async (key: string) => {
      const value = versionSchema.safeParse(await meta.get(key));
      return value.success ? value.data : undefined;
    };
    const stored = await read(versionKey);
    if (stored !== undefined && stored > options.version) {
      const readableFrom = (await read(readableFromKey)) ?? stored;
      if (readableFrom > options.version) {
        throw new OutpostError('STORE_TOO_NEW', `state store ${options.location} has format version ${stored}, readable from version ${readableFrom} on; this outpost writes version ${options.version}: it was written by a newer release`);
      }
      options.onEvent?.({ kind: 'newer', version: stored, readableFrom });
      return new Store(db, options, stored);
    }
    const store = new Store(db, options, stored ?? options.version);
    if (stored === undefined) await versionBatch(db, store.batch(), options.version, oldestReader(options)).commit();
    else await store.runSteps();
    return store;
  }

  /** Opens (creating if needed) the store, migrating it to `version`. */
  static async open(options: OpenStoreOptions): Promise<Store> {
    let db: Db;
    try {
      db = await openLevel(options.location);
    } catch (err) {
      const corrupt = levelCause(err) === 'LEVEL_CORRUPTION';
      if (!corrupt || !options.repair) throw openError(err, options.location, false);
      const backup = await repair(options.location);
      options.onEvent?.({ kind: 'repaired', backup });
      try {
        db = await openLevel(options.location);
      } catch (again) {
        throw openError(again, options.location, true);
      }
    }
    try {
      return await Store.migrate(db, options);
    } catch (err) {
      await db.close().catch(() => undefined);
      throw err;
    }
  }
}

async function openLevel(location: string): Promise<Db> {
  const db: Db = new ClassicLevel<string, unknown>(location, { valueEncoding: 'json' });
  await db.open({ createIfMissing: true });
  return db;
}

function levelCause(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

function openError(err: unknown, location: string, repaired: boolean): OutpostError {
  const detail = (err as { cause?: { message?: string } }).cause?.message ?? String(err);
  switch (levelCause(err)) {
    case 'LEVEL_LOCKED':
      return new OutpostError('STORE_LOCKED', `state store ${location} is locked by another process (is another outpost running with the same stateDir?)`, { cause: err });
    case 'LEVEL_CORRUPTION':
      return new OutpostError(
        'STORE_CORRUPT',
        repaired
          ? `state store ${location} is corrupt (${detail}) and LevelDB repair did not fix it; move it aside to start with empty state`
          : `state store ${location} is corrupt (${detail}); \`outpost run\` repairs it on start, keeping a copy beside it`,
        { cause: err },
      );
    default:
      return toOutpostError(err, 'STORE_IO', `cannot open the state store at ${location}`);
  }
}

/** Where the one kept copy of a damaged store goes; older copies are removed (disk is bounded). */
function damagedCopyPath(location: string): string {
  const parent = dirname(location);
  const prefix = `${basename(location)}.corrupt-`;
  for (const old of readdirSync(parent).filter((n) => n.startsWith(prefix))) rmSync(join(parent, old), { recursive: true, force: true });
  return join(parent, `${prefix}${Date.now()}`);
}

/** Keeps one copy of the damaged store beside it, then lets LevelDB repair it. */
async function repair(location: string): Promise<string> {
  const backup = damagedCopyPath(location);
  cpSync(location, backup, { recursive: true });
  await ClassicLevel.repair(location);
  return backup;
}

/**
 * Moves a closed store that repair could not make readable out of the way, so the next open starts
 * empty; only for a store whose contents can be rebuilt. Returns where the damaged one was kept.
 */
export function setAsideStore(location: string): string {
  const kept = damagedCopyPath(location);
  renameSync(location, kept);
  return kept;
}

const versionSchema = z.number().int().positive();

/** The oldest format whose code reads this code's format: every step since it kept older releases able to. */
function oldestReader(options: OpenStoreOptions): number {
  let version = options.version;
  while (version > 1 && options.migrations?.find((m) => m.from === version - 1)?.keepsOlderReadable === true) version -= 1;
  return version;
}

/** Adds both format versions to `batch`. */
function versionBatch(db: Db, batch: WriteBatch, version: number, readableFrom: number): WriteBatch {
  const meta = new LevelCollection('meta', jsonSublevel(db, 'meta'), versionSchema);
  return batch.put(meta, versionKey, version).put(meta, readableFromKey, readableFrom);
}
