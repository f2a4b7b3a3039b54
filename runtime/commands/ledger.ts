/**
 * What the device has done with every authentic command it was sent, until the command expires:
 * the replay store and the record of results, in the state store.
 *
 * Invariants:
 * - A command's id is written as `started`, fsync'd, before its handler runs. A crash mid-run
 *   leaves it `started`; the next start reports it `interrupted` and never runs it again.
 * - The final result is written in the same batch as its outbox entry (link/outbox.ts), so a
 *   result is either recorded and on its way, or neither.
 * - The nonce is kept beside the id: the same signed intent under a new id is still a replay.
 * - Entries go only once their command expired by the reference time, which only moves forward
 *   (verify.ts judges expiry first, so a pruned command is refused as expired, never run again).
 */
import { z } from 'zod';
import type { Collection, Store, WriteBatch } from '../store/index.js';

const entrySchema = z.strictObject({
  state: z.enum(['started', 'finished']),
  type: z.string(),
  nonce: z.string(),
  expires: z.iso.datetime(),
  /** Where the result goes (the request's response topic or the device's default). */
  replyTopic: z.string(),
  /** base64 of the request's MQTT correlation data. */
  correlationData: z.string().optional(),
  startedAt: z.iso.datetime().optional(),
  /** The encoded final result, once there is one. */
  result: z.string().optional(),
});

/** One ledger entry. */
export type LedgerEntry = z.infer<typeof entrySchema>;

/** The ledger's store collections; an older release ignores them. */
export const LEDGER_COLLECTIONS = { ids: 'command-ids', nonces: 'command-nonces' } as const;

/** The replay store and result record of commands. */
export class CommandLedger {
  private readonly ids: Collection<LedgerEntry>;
  private readonly nonces: Collection<string>;

  constructor(private readonly store: Store) {
    this.ids = store.collection(LEDGER_COLLECTIONS.ids, entrySchema);
    this.nonces = store.collection(LEDGER_COLLECTIONS.nonces, z.string());
  }

  /** Whether this id, or this nonce under another id, was seen before. */
  async seen(id: string, nonce: string): Promise<'id' | 'nonce' | undefined> {
    if ((await this.ids.get(id)) !== undefined) return 'id';
    return (await this.nonces.get(nonce)) !== undefined ? 'nonce' : undefined;
  }

  get(id: string): Promise<LedgerEntry | undefined> {
    return this.ids.get(id);
  }

  /** Adds the entry (and its nonce) to `batch`; the caller commits it with what goes with it. */
  record(batch: WriteBatch, id: string, entry: LedgerEntry): WriteBatch {
    return batch.put(this.ids, id, entry).put(this.nonces, entry.nonce, id);
  }

  /** Entries still `started`: commands whose run a crash or power cut cut short. */
  async unfinished(): Promise<[string, LedgerEntry][]> {
    return (await this.ids.entries()).filter(([, entry]) => entry.state === 'started');
  }

  /** Removes the entries (and nonces) of commands that expired before `reference`; returns how many. */
  async prune(reference: Date): Promise<number> {
    const batch = this.store.batch();
    let pruned = 0;
    for (const [id, entry] of await this.ids.entries()) {
      if (entry.state !== 'finished' || Date.parse(entry.expires) > reference.getTime()) continue;
      batch.del(this.ids as Collection<unknown>, id).del(this.nonces as Collection<unknown>, entry.nonce);
      pruned += 1;
    }
    await batch.commit();
    return pruned;
  }
}
