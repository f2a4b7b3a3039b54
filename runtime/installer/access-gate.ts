/**
 * The installer's own check of just-in-time access: a key is added to sshd's files only on the
 * proof of the signed `grant-access` command that granted it, verified here, offline, as the agent
 * verified it (commands/verify.ts), with the issuers of the signed metadata the installer walks
 * itself (deploy-gate.ts). So a compromised agent can no longer install a key of its choosing;
 * it can still leave keys out, which is always safe.
 *
 * Invariants:
 * - An entry adds a key unless this installer accepted its grant id before with the same
 *   principal, key and `from=`, and an expiry no earlier than the entry's (to the second, as sshd
 *   reads it). Adding needs the envelope: issuer known and not revoked, its signature, target this
 *   device or one of the image's config's groups, valid now, `grant-access` allowed to the issuer,
 *   args within the image's config, the command id the grant id, and the entry what the args say,
 *   expiring no later than the command allows (granted at the latest when it expired).
 * - A grant id is accepted once. Once a set leaves it out (revoked, expired, failed) it stays out:
 *   its envelope shown again is refused, as long as that envelope could still verify.
 * - The record (`access-grants.json` in the installer's state dir) is written before the keys,
 *   so no key is on disk that it does not know. Lines already in the key files count as accepted:
 *   they were written by an installer, and a device upgraded with a grant open keeps it.
 * - A refusal is per entry: the set writes every entry it accepts and every removal, and answers
 *   the refused ids with why. A grant the installer cannot prove (its proof lost with the agent's
 *   crash, or its command expired before the agent could show it) never holds up the others nor a
 *   revocation.
 * - A record is forgotten only once the installer's trusted time (the reference time of its TUF
 *   walks, which never goes back and judges every envelope) is past the time its envelope could
 *   still verify: a wall clock run ahead and set back cannot make it forget an ended grant. The
 *   entries themselves are judged by the wall clock, as the agent computed their expiry: a clock
 *   behind the last set (a power cut, no RTC) never drops a new grant.
 * - The issuers come from the export walked as for a deploy, but expired metadata falls back to
 *   the targets this installer verified last while they live (deploy-gate.ts `stored-if-expired`).
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { AccessEntry, AccessHost, AccessRefusal } from '../access/host.js';
import { parseAuthorizedKeyLine, PRINCIPAL_PATTERN, parsePublicKey } from '../access/keys.js';
import type { AccessSettings } from '../access/service.js';
import { grantAccessArgs } from '../commands/handlers/grant-access.js';
import { issuersFromTargets } from '../commands/issuers.js';
import { verifyEnvelope } from '../commands/verify.js';
import { isOutpostError, OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import { writeFileAtomic } from '../platform/index.js';
import type { TrustedTargets } from '../update/tuf/index.js';
import { exportedTargets, type ExportWalkOptions } from './deploy-gate.js';

/** What the gate needs: the image's config, and where the signed metadata and its record are. */
export interface AccessGateOptions {
  /** The local adapter that writes the files (access/host.ts). */
  readonly host: AccessHost;
  readonly walk: ExportWalkOptions;
  /** The installer's record of the grants it accepted. */
  readonly recordFile: string;
  readonly keysDir: string;
  readonly deviceId: string;
  readonly groups: readonly string[];
  /** The image's commands.access: the principals and longest grant a command may ask for. */
  readonly settings: Pick<AccessSettings, 'principals' | 'maxDurationSec'>;
  /** Tolerance for a command's `notBefore` (commands.skewSec). */
  readonly skewMs: number;
  readonly now: () => Date;
  readonly log: Logger;
}

const recordSchemaId = 'outpost.installer-access/1';

/** One accepted grant; loose, so a record a newer release wrote still reads after a rollback. */
const acceptedSchema = z.looseObject({
  principal: z.string(),
  /** `<type> <base64>` as parsed. */
  publicKey: z.string(),
  from: z.string().optional(),
  expiresAt: z.iso.datetime(),
  /** Until when the record is kept: past it, the grant's envelope no longer verifies and its key has expired. */
  until: z.iso.datetime(),
  /** Left out of a set: never added again. */
  ended: z.boolean(),
});
type Accepted = z.infer<typeof acceptedSchema>;

const recordSchema = z.looseObject({
  schema: z.literal(recordSchemaId),
  /** The newest reference time of this installer's TUF walks (absent in older records). */
  trustedTime: z.iso.datetime().optional(),
  grants: z.record(z.string(), acceptedSchema),
});
interface GateRecord {
  readonly trustedMs: number;
  readonly grants: Map<string, Accepted>;
}

/** The agent computed the expiry a moment before asking, with its own clock. */
const expirySlackMs = 60_000;

const seconds = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

async function readRecord(options: AccessGateOptions): Promise<GateRecord> {
  let text: string;
  try {
    text = await readFile(options.recordFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { trustedMs: 0, grants: new Map() };
    throw new OutpostError('INSTALLER_REFUSED', `cannot read ${options.recordFile}: ${(err as Error).message}`, { transient: true });
  }
  const parsed = (() => {
    try {
      return recordSchema.safeParse(JSON.parse(text));
    } catch {
      return undefined;
    }
  })();
  // Written atomically, so only a bug or a hand makes it unreadable: what is lost is the memory of
  // ended grants, whose envelopes then verify again until they expire. Starting over beats
  // refusing every change from then on.
  if (!parsed?.success) {
    options.log.error('the record of accepted access grants is unreadable; starting it again', { file: options.recordFile });
    return { trustedMs: 0, grants: new Map() };
  }
  return { trustedMs: parsed.data.trustedTime === undefined ? 0 : Date.parse(parsed.data.trustedTime), grants: new Map(Object.entries(parsed.data.grants)) };
}

/** The lines of the key files, as accepted grants (see the module's invariants). */
async function keyFileGrants(keysDir: string): Promise<Map<string, Accepted>> {
  const found = new Map<string, Accepted>();
  let names: string[];
  try {
    names = await readdir(keysDir);
  } catch {
    return found;
  }
  for (const principal of names.filter((n) => PRINCIPAL_PATTERN.test(n))) {
    const text = await readFile(join(keysDir, principal), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const entry = parseAuthorizedKeyLine(line, principal);
      if (entry) found.set(entry.id, { principal, publicKey: entry.publicKey, ...(entry.from === undefined ? {} : { from: entry.from }), expiresAt: entry.expiresAt, until: entry.expiresAt, ended: false });
    }
  }
  return found;
}

function sameKey(a: string, b: string): boolean {
  try {
    return parsePublicKey(a).text === parsePublicKey(b).text;
  } catch {
    return false;
  }
}

/** Why `entry` may not be added on the strength of `proof`, or what to record for it. */
async function checkProof(options: AccessGateOptions, entry: AccessEntry, targets: () => Promise<TrustedTargets>, nowMs: number, trustedMs: number): Promise<string | Accepted> {
  if (entry.proof === undefined) return 'it adds a key and carries no signed grant-access command';
  const trusted = await targets();
  // Never before what a record was forgotten by (a store set aside starts its floor again).
  const referenceMs = Math.max(trusted.referenceTime.getTime(), trustedMs);
  const issuers = issuersFromTargets(trusted);
  if (!issuers.ok) return `the command issuers of the signed metadata are unusable: ${issuers.reason}`;
  const verdict = await verifyEnvelope(entry.proof, {
    deviceId: options.deviceId,
    groups: options.groups,
    issuers: issuers.issuers,
    now: new Date(nowMs),
    notEarlierThan: new Date(referenceMs),
    skewMs: options.skewMs,
    // The record is the installer's replay store: an id in it never reaches this check.
    seen: async () => undefined,
    argsSchemas: new Map([['grant-access', grantAccessArgs(options.settings)]]),
  });
  if (!verdict.ok) return `its command does not verify (${verdict.reason}): ${verdict.message}`;
  const { command } = verdict;
  const args = verdict.args as { publicKey: string; principal: string; durationSec: number; from?: string };
  if (command.id !== entry.id) return `its command is ${command.id}, another grant`;
  if (args.principal !== entry.principal) return `its command grants principal ${args.principal}, not ${entry.principal}`;
  if (!sameKey(args.publicKey, entry.publicKey)) return 'its command grants another key';
  if (args.from !== entry.from) return `its command grants from=${args.from ?? '(any)'}, not from=${entry.from ?? '(any)'}`;
  const reference = Math.max(nowMs, referenceMs);
  const latest = Math.min(Date.parse(command.expires), reference + expirySlackMs) + args.durationSec * 1000;
  if (Date.parse(entry.expiresAt) > latest) return `it expires at ${entry.expiresAt}, later than its command allows (${new Date(latest).toISOString()}: ${args.durationSec} s from now)`;
  const until = new Date(Math.max(Date.parse(entry.expiresAt), Date.parse(command.expires) + options.skewMs)).toISOString();
  return { principal: entry.principal, publicKey: parsePublicKey(entry.publicKey).text, ...(entry.from === undefined ? {} : { from: entry.from }), expiresAt: entry.expiresAt, until, ended: false };
}

/** The access port of the installer: `set` adds only proven keys; the rest is the local adapter's. */
export function gatedAccessHost(options: AccessGateOptions): AccessHost {
  return {
    async set(entries) {
      const nowMs = options.now().getTime();
      const stored = await readRecord(options);
      let trustedMs = stored.trustedMs;
      const record = stored.grants;
      for (const [id, line] of await keyFileGrants(options.keysDir)) if (!record.has(id)) record.set(id, line);
      let targets: Promise<TrustedTargets> | undefined;
      const walk = () =>
        (targets ??= exportedTargets(options.walk, 'will not add an access key', 'stored-if-expired').then((trusted) => {
          trustedMs = Math.max(trustedMs, trusted.referenceTime.getTime());
          return trusted;
        }));
      const refused: AccessRefusal[] = [];
      const kept: AccessEntry[] = [];
      const next = new Map(record);
      for (const entry of entries) {
        // sshd refuses such a key anyway; leaving it out is a removal.
        if (Date.parse(entry.expiresAt) <= nowMs) continue;
        const known = record.get(entry.id);
        const refuse = (reason: string): void => void refused.push({ id: entry.id, reason });
        if (known?.ended) {
          refuse('it was removed (revoked or ended) and is not added again');
        } else if (known) {
          if (known.principal !== entry.principal || !sameKey(known.publicKey, entry.publicKey) || known.from !== entry.from) refuse('it was accepted for another principal, key or from=; a grant never changes');
          else if (seconds(entry.expiresAt) > seconds(known.expiresAt)) refuse(`it was accepted until ${known.expiresAt}; a grant is never extended (asked ${entry.expiresAt})`);
          else kept.push(entry);
        } else {
          // A store that is busy passes: the whole set is retried. Metadata that does not verify stays so.
          const checked = await checkProof(options, entry, walk, nowMs, stored.trustedMs).catch((err: unknown) => {
            if (isOutpostError(err) && err.transient) throw err;
            return `its proof cannot be checked: ${(err as Error).message}`;
          });
          if (typeof checked === 'string') refuse(checked);
          else {
            next.set(entry.id, checked);
            kept.push(entry);
          }
        }
      }
      if (refused.length > 0) options.log.warn('access keys refused', { refused });
      const keptIds = new Set(kept.map((e) => e.id));
      for (const [id, accepted] of next) {
        if (Date.parse(accepted.until) < trustedMs) next.delete(id);
        else if (!accepted.ended && !keptIds.has(id)) next.set(id, { ...accepted, ended: true });
      }
      await mkdir(dirname(options.recordFile), { recursive: true, mode: 0o700 });
      await writeFileAtomic(options.recordFile, `${JSON.stringify({ schema: recordSchemaId, ...(trustedMs > 0 ? { trustedTime: new Date(trustedMs).toISOString() } : {}), grants: Object.fromEntries(next) })}\n`, { mode: 0o600 });
      const written = await options.host.set(kept);
      return { refused: [...refused, ...written.refused] };
    },
    endSessions: (principal) => options.host.endSessions(principal),
    sessions: () => options.host.sessions(),
  };
}
