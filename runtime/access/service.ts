/**
 * Just-in-time remote access: grants of an SSH key to an allow-listed local account for a bounded
 * time, their end at expiry or revocation, their reverse tunnels, and an event for each.
 *
 * Invariants:
 * - Persisted before acted on: a grant is stored `active` with its `access-granted` event in one
 *   batch before its key is installed; an end is stored (`ending`, reason, event) before the key is
 *   removed and the sessions ended, and the record is deleted only after both. `kill -9` at any line
 *   leaves a record that the next start finishes: active ones are installed again and re-armed,
 *   ending ones are ended again (every host call is idempotent: `set` writes the whole truth).
 * - The key files always hold exactly the active grants; every change goes through one
 *   single-flight `reconcile`, retried with a backoff (1 s doubling to 60 s) while it fails (the
 *   installer restarting), so two changes never race and a failed removal is not forgotten.
 * - Expiry runs on CLOCK_MONOTONIC (grants.ts says how it survives a reboot without extending), and
 *   the key also carries sshd's wall-clock `expiry-time=`: whichever comes first ends the access.
 * - An end also ends the principal's sessions: OpenSSH checks a key only at login. Sessions are
 *   ended per principal (see host.ts), so the other grants of the same principal lose their open
 *   sessions too; their keys stay and they log in again.
 * - Events (`outpost.event/1` on the device's events topic, class `event`): `access-granted`,
 *   `access-revoked`, `access-expired` in the batch that decides them; `access-login` for each
 *   session seen by polling while a grant lives (at least once: a restart may report an open
 *   session again, with the same session id).
 */
import { join } from 'node:path';
import { z } from 'zod';
import { isOutpostError, OutpostError } from '../errors.js';
import type { Service } from '../lifecycle/index.js';
import type { Outbox } from '../link/index.js';
import type { Logger } from '../logs/index.js';
import { kernelBootId, systemClock, type Clock, type Exec } from '../platform/index.js';
import { eventsTopic } from '../protocol/index.js';
import type { Collection, Store, WriteBatch } from '../store/index.js';
import { checkpointRemaining, CHECKPOINT_MS, GRANTS_COLLECTION, grantRecordSchema, resumeGrant, type GrantRecord } from './grants.js';
import type { AccessEntry, AccessHost } from './host.js';
import { parsePublicKey } from './keys.js';
import { ensureTunnelKey, startTunnel, tunnelHostAllowed, TUNNELS_OFF, type Tunnel, type TunnelTarget } from './tunnel.js';

/** Schema id of the events (as link/drain.ts's `outbox-dropped`). */
export const ACCESS_EVENT_SCHEMA = 'outpost.event/1';

/** The settings the service runs with (config `commands.access`). */
export interface AccessSettings {
  /** The agent's own files of access (the tunnels' known-hosts files). */
  readonly dir: string;
  readonly principals: readonly string[];
  readonly maxDurationSec: number;
  readonly sshdPort: number;
  readonly tunnels: boolean;
  /** The bastions a tunnel may go to (names compared case-insensitively). */
  readonly tunnelHosts: readonly string[];
  readonly tunnelKeyFile: string;
  readonly loginPollSec: number;
}

/** What the service needs. */
export interface AccessServiceOptions {
  readonly settings: AccessSettings;
  readonly deviceId: string;
  readonly store: () => Store;
  readonly outbox: () => Outbox;
  readonly host: AccessHost;
  readonly exec: Exec;
  readonly log: Logger;
  readonly clock?: Clock;
  readonly bootId?: () => Promise<string>;
}

/** A grant as the `grant-access` command asks for it (validated by its handler). */
export interface GrantRequest {
  readonly publicKey: string;
  readonly principal: string;
  readonly durationSec: number;
  readonly from?: string;
  readonly tunnel?: TunnelTarget;
}

/** What `grant-access` answers. */
export interface GrantOutcome {
  readonly grantId: string;
  readonly principal: string;
  readonly fingerprint: string;
  readonly expiresAt: string;
  readonly tunnel?: { readonly host: string; readonly remotePort: number; readonly devicePublicKey: string };
}

/** Which grants `revoke-access` ends: every active grant matching all given fields. */
export interface RevokeSelector {
  readonly grantId?: string;
  readonly fingerprint?: string;
  readonly principal?: string;
}

/** What one reconcile run did: grants the installer refused (with why), ends it could not finish (with the error). */
interface ReconcileOutcome {
  readonly refused: ReadonlyMap<string, string>;
  readonly unfinished: ReadonlyMap<string, unknown>;
}

/** Bounds the installer request that carries every active grant's proof (installer/protocol.ts). */
export const MAX_ACTIVE_GRANTS = 64;

const retryMinMs = 1_000;
const retryMaxMs = 60_000;

export class AccessService implements Service {
  readonly name = 'access';
  private grants: Collection<GrantRecord> | undefined;
  private bootId = 'unknown';
  private readonly clock: Clock;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly tunnels = new Map<string, Promise<Tunnel | undefined>>();
  private readonly seenSessions = new Set<string>();
  /** Grants whose key a `set` put in place: the installer knows them, their proofs need not travel again. */
  private readonly shown = new Set<string>();
  private chain: Promise<void> = Promise.resolve();
  /**
   * Writers that read grant records and write them back run one at a time, so a checkpoint can
   * never write back as `active` a grant that a revoke or expiry just ended.
   */
  private recordWrites: Promise<unknown> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = retryMinMs;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(private readonly options: AccessServiceOptions) {
    this.clock = options.clock ?? systemClock;
  }

  get settings(): AccessSettings {
    return this.options.settings;
  }

  /** Re-reads the grants: ends the expired ones, moves the others into this boot, re-arms them. */
  async start(): Promise<void> {
    const store = this.options.store();
    this.grants = store.collection(GRANTS_COLLECTION, grantRecordSchema);
    this.bootId = await (this.options.bootId ?? kernelBootId)().catch(() => 'unknown');
    const nowMs = this.clock.monotonicMs();
    const now = this.clock.now();
    const batch = store.batch();
    let changed = false;
    for (const [id, record] of await this.grants.entries()) {
      if (record.state !== 'active') continue;
      const resumed = resumeGrant(record, this.bootId, nowMs, now);
      if (resumed.ended) {
        await this.markEnding(batch, id, record, 'expired');
        changed = true;
      } else if (resumed.moved) {
        this.options.log.info('a grant from another boot resumes with no more than the time it had left', { id, remainingMs: resumed.deadlineMs - nowMs });
        batch.put(this.grants, id, { ...record, bootId: this.bootId, deadlineMs: resumed.deadlineMs, remainingMs: checkpointRemaining(resumed.deadlineMs, nowMs) });
        changed = true;
      }
    }
    if (changed) await batch.commit();
    for (const [id, record] of await this.grants.entries()) {
      if (record.state === 'active') this.arm(id, record);
    }
    this.checkpointTimer = setInterval(() => void this.checkpoint(), CHECKPOINT_MS).unref();
    this.schedulePoll();
    // Not awaited: an installer that is not up yet must not hold the daemon's start; it is retried.
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    clearTimeout(this.retryTimer);
    clearInterval(this.checkpointTimer);
    clearTimeout(this.pollTimer);
    await Promise.all([...this.tunnels.keys()].map((id) => this.closeTunnel(id)));
    await this.chain;
  }

  /**
   * Installs a grant; `id` is the granting command's, `proof` its envelope (what the installer
   * needs to add the key). Resolves once the key is in place.
   */
  async grant(id: string, request: GrantRequest, proof?: unknown, signal?: AbortSignal): Promise<GrantOutcome> {
    const grants = this.requireGrants();
    const { settings } = this.options;
    // Every active grant's proof travels in one installer request after a restart (installer/protocol.ts).
    if ((await this.active()).length >= MAX_ACTIVE_GRANTS) throw new OutpostError('ACCESS_REFUSED', `${MAX_ACTIVE_GRANTS} grants are active already; revoke one first`);
    if (!settings.principals.includes(request.principal)) throw new OutpostError('ACCESS_REFUSED', `principal ${request.principal} is not in commands.access.principals`);
    if (request.durationSec > settings.maxDurationSec) throw new OutpostError('ACCESS_REFUSED', `durationSec ${request.durationSec} is more than commands.access.maxDurationSec (${settings.maxDurationSec})`);
    if (request.tunnel && !settings.tunnels) throw new OutpostError('ACCESS_REFUSED', TUNNELS_OFF);
    if (request.tunnel && !tunnelHostAllowed(settings.tunnelHosts, request.tunnel.host)) throw new OutpostError('ACCESS_REFUSED', `tunnel host ${request.tunnel.host} is not in commands.access.tunnelHosts`);
    const key = parsePublicKey(request.publicKey);
    const devicePublicKey = request.tunnel ? await ensureTunnelKey(settings.tunnelKeyFile, this.options.exec) : undefined;
    const nowMs = this.clock.monotonicMs();
    const now = this.clock.now();
    const durationMs = request.durationSec * 1000;
    const record: GrantRecord = {
      state: 'active',
      principal: request.principal,
      publicKey: key.text,
      fingerprint: key.fingerprint,
      ...(request.from === undefined ? {} : { from: request.from }),
      ...(request.tunnel ? { tunnel: { ...request.tunnel } } : {}),
      grantedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + durationMs).toISOString(),
      bootId: this.bootId,
      deadlineMs: nowMs + durationMs,
      remainingMs: checkpointRemaining(nowMs + durationMs, nowMs),
      ...(proof === undefined ? {} : { proof }),
    };
    signal?.throwIfAborted();
    const batch = this.options.store().batch().put(grants, id, record);
    await this.event(batch, 'access-granted', id, record);
    await batch.commit();
    this.options.log.info('access granted', { id, principal: record.principal, fingerprint: record.fingerprint, expiresAt: record.expiresAt, from: record.from, tunnel: record.tunnel?.host });
    const fail = (): Promise<void> => this.markEnded([[id, record]], 'failed').catch((e: unknown) => this.options.log.error('cannot record the failed grant as ended', { id, err: e }));
    // The command is answered (timed out) while the installer is still at it: the end is recorded
    // at once, so a kill -9 before the installer answers cannot bring back access the operator
    // was told had failed.
    const abandon = (): void => void fail();
    signal?.addEventListener('abort', abandon, { once: true });
    let refused: ReadonlyMap<string, string>;
    try {
      ({ refused } = await this.reconcile());
      signal?.throwIfAborted();
    } catch (err) {
      // Not in place: the grant ends rather than appearing later, when a retry succeeds (which
      // then removes whatever part of it was written).
      await fail();
      throw err;
    } finally {
      signal?.removeEventListener('abort', abandon);
    }
    const reason = refused.get(id);
    // Already recorded as ended by the run that was refused.
    if (reason !== undefined) throw new OutpostError('ACCESS_UNPROVEN', `the installer refused the grant: ${reason}`);
    this.arm(id, record);
    return {
      grantId: id,
      principal: record.principal,
      fingerprint: record.fingerprint,
      expiresAt: record.expiresAt,
      ...(record.tunnel && devicePublicKey ? { tunnel: { host: record.tunnel.host, remotePort: record.tunnel.remotePort, devicePublicKey } } : {}),
    };
  }

  /** Ends the matching active grants; resolves with their ids once their keys are removed and their sessions ended. */
  async revoke(selector: RevokeSelector): Promise<string[]> {
    const grants = this.requireGrants();
    const matching = (await grants.entries()).filter(
      ([id, r]) => r.state === 'active' && (selector.grantId === undefined || selector.grantId === id) && (selector.fingerprint === undefined || selector.fingerprint === r.fingerprint) && (selector.principal === undefined || selector.principal === r.principal),
    );
    if (matching.length > 0) await this.end(matching, 'revoked');
    return matching.map(([id]) => id);
  }

  /** The active grants, for diagnostics and tests. */
  async active(): Promise<[string, GrantRecord][]> {
    return (await this.requireGrants().entries()).filter(([, r]) => r.state === 'active');
  }

  private requireGrants(): Collection<GrantRecord> {
    if (!this.grants || this.stopping) throw new OutpostError('INTERNAL', 'the access service is not running');
    return this.grants;
  }

  /** Records the end (state, reason, event: one batch), then carries it out. */
  private async end(entries: [string, GrantRecord][], reason: 'expired' | 'revoked'): Promise<void> {
    await this.markEnded(entries, reason);
    const { unfinished } = await this.reconcile();
    for (const [id] of entries) if (unfinished.has(id)) throw unfinished.get(id);
  }

  private serially<T>(write: () => Promise<T>): Promise<T> {
    const run = this.recordWrites.catch(() => undefined).then(write);
    this.recordWrites = run.catch(() => undefined);
    return run;
  }

  /** Records the end of `entries` in one batch; a retry or the next start carries it out. */
  private async markEnded(entries: [string, GrantRecord][], reason: 'expired' | 'revoked' | 'failed', refusals?: ReadonlyMap<string, string>): Promise<void> {
    await this.serially(async () => {
      const batch = this.options.store().batch();
      for (const [id, record] of entries) {
        // Another end (a revoke during an installer call) may have recorded it since it was read.
        const current = (await this.grants?.get(id)) ?? record;
        if (current.state === 'active') await this.markEnding(batch, id, current, reason, refusals?.get(id));
      }
      await batch.commit();
    });
    for (const [id] of entries) {
      clearTimeout(this.timers.get(id));
      this.timers.delete(id);
      this.options.log.info(reason === 'expired' ? 'access expired' : 'access ended', { id, reason });
    }
    if (reason === 'failed') this.scheduleRetry();
  }

  private async markEnding(batch: WriteBatch, id: string, record: GrantRecord, reason: 'expired' | 'revoked' | 'failed', refusal?: string): Promise<void> {
    batch.put(this.grants!, id, { ...record, state: 'ending', endReason: reason });
    await this.event(batch, reason === 'expired' ? 'access-expired' : 'access-revoked', id, record, { reason, ...(refusal === undefined ? {} : { refusal }) });
  }

  private async event(batch: WriteBatch | undefined, type: string, grantId: string | undefined, record: Pick<GrantRecord, 'principal'> & Partial<GrantRecord>, extra: Record<string, unknown> = {}): Promise<void> {
    const payload = {
      schema: ACCESS_EVENT_SCHEMA,
      type,
      at: this.clock.now().toISOString(),
      ...(grantId === undefined ? {} : { grantId }),
      principal: record.principal,
      ...(record.fingerprint === undefined ? {} : { fingerprint: record.fingerprint }),
      ...(record.expiresAt === undefined ? {} : { expiresAt: record.expiresAt }),
      ...(record.from === undefined ? {} : { from: record.from }),
      ...(record.tunnel === undefined ? {} : { tunnel: { host: record.tunnel.host, port: record.tunnel.port, remotePort: record.tunnel.remotePort } }),
      ...extra,
    };
    await this.options.outbox().put({ class: 'event', topic: eventsTopic(this.options.deviceId), payload: JSON.stringify(payload) }, batch);
  }

  /** Arms the grant's timer and starts its tunnel. */
  private arm(id: string, record: GrantRecord): void {
    if (this.stopping) return;
    clearTimeout(this.timers.get(id));
    const fire = (): void => {
      const left = record.deadlineMs - this.clock.monotonicMs();
      // A timer may fire a little early; and a long one is re-armed in steps below setTimeout's limit.
      if (left > 0) {
        this.timers.set(id, setTimeout(fire, Math.min(left, 2 ** 31 - 1)));
        return;
      }
      this.timers.delete(id);
      void this.expire(id);
    };
    fire();
    if (record.tunnel && !this.tunnels.has(id)) {
      // A grant stored before the config changed: its bastion must still be allowed.
      if (this.options.settings.tunnels && tunnelHostAllowed(this.options.settings.tunnelHosts, record.tunnel.host)) this.openTunnel(id, record);
      else this.options.log.warn('the tunnel of a grant is not opened: its bastion is no longer in commands.access.tunnelHosts', { id, host: record.tunnel.host });
    }
  }

  private async expire(id: string): Promise<void> {
    try {
      const record = await this.grants?.get(id);
      if (!record || record.state !== 'active' || this.stopping) return;
      await this.end([[id, record]], 'expired');
    } catch (err) {
      // Recorded as ending or not: the retry (or the next start) finishes it.
      this.options.log.error('cannot end an expired grant yet; retried', { id, err });
      this.scheduleRetry();
    }
  }

  private openTunnel(id: string, record: GrantRecord): void {
    const { settings } = this.options;
    const tunnel = record.tunnel!;
    this.tunnels.set(
      id,
      ensureTunnelKey(settings.tunnelKeyFile, this.options.exec)
        .then(() =>
          startTunnel({
            id,
            target: tunnel,
            keyFile: settings.tunnelKeyFile,
            dir: this.options.settings.dir,
            sshdPort: settings.sshdPort,
            remainingMs: () => record.deadlineMs - this.clock.monotonicMs(),
            log: this.options.log.child('tunnel'),
          }),
        )
        .catch((err: unknown) => {
          this.options.log.error('cannot start the tunnel of a grant', { id, err });
          return undefined;
        }),
    );
  }

  private async closeTunnel(id: string): Promise<void> {
    const tunnel = this.tunnels.get(id);
    if (!tunnel) return;
    await (await tunnel)?.stop();
    this.tunnels.delete(id);
  }

  /**
   * One run at a time, in call order; each reads the grants afresh, so a change made while a run is
   * under way is in the next one.
   */
  private reconcile(): Promise<ReconcileOutcome> {
    const run = this.chain.then(() => this.reconcileOnce());
    // Handled here: the caller gets `run` itself, and a rejection left on the chain would end the process.
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run.then(
      (outcome) => {
        if (outcome.unfinished.size > 0) this.scheduleRetry();
        else this.retryMs = retryMinMs;
        return outcome;
      },
      (err: unknown) => {
        this.scheduleRetry();
        throw err;
      },
    );
  }

  private kick(): void {
    this.reconcile().catch((err: unknown) => this.options.log.warn('cannot bring the authorized keys up to date; retried', { err }));
  }

  private scheduleRetry(): void {
    if (this.stopping || this.retryTimer) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, retryMaxMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
  }

  /**
   * Sets the key files to the active grants, ends the ones the installer refuses, and finishes the
   * ending ones; rejects only when the set fails. A grant's own outcome is not another's failure.
   */
  private async reconcileOnce(): Promise<ReconcileOutcome> {
    const grants = this.requireGrants();
    const all = await grants.entries();
    const active = all.filter(([, r]) => r.state === 'active');
    const entries = (): AccessEntry[] =>
      active.map(([id, r]) => ({
        id,
        principal: r.principal,
        publicKey: r.publicKey,
        expiresAt: r.expiresAt,
        ...(r.from === undefined ? {} : { from: r.from }),
        ...(r.proof === undefined || this.shown.has(id) ? {} : { proof: r.proof }),
      }));
    let { refused } = await this.options.host.set(entries());
    // Shown without their proof, which the installer no longer remembers (its record lost): once more with it.
    const unshown = refused.filter((r) => this.shown.delete(r.id));
    if (unshown.length > 0) ({ refused } = await this.options.host.set(entries()));
    const reasons = new Map(refused.map((r) => [r.id, r.reason]));
    for (const [id] of active) if (!reasons.has(id)) this.shown.add(id);
    const failed = active.filter(([id]) => reasons.has(id));
    if (failed.length > 0) {
      this.options.log.warn('the installer refused grants; they end', { refused });
      await this.markEnded(failed, 'failed', reasons);
    }
    const unfinished = new Map<string, unknown>();
    for (const [id, record] of all.filter(([, r]) => r.state === 'ending')) {
      try {
        await this.closeTunnel(id);
        const ended = await this.options.host.endSessions(record.principal).catch((err: unknown) => {
          // Refused for good (a principal root's config does not allow: it never had a key from
          // it either). Retrying would ask every minute, forever.
          if (!isOutpostError(err) || err.transient) throw err;
          this.options.log.error('the installer refuses to end the sessions of a grant\'s principal; its record is dropped', { id, principal: record.principal, err });
          return 0;
        });
        await this.options.store().batch().del(grants as Collection<unknown>, id).commit();
        this.shown.delete(id);
        this.options.log.info('grant ended: key removed, sessions ended', { id, principal: record.principal, reason: record.endReason, processesEnded: ended });
      } catch (err) {
        this.options.log.warn('cannot finish ending a grant yet; retried', { id, err });
        unfinished.set(id, err);
      }
    }
    return { refused: reasons, unfinished };
  }

  /** Writes down what a reboot may still give each active grant (grants.ts). */
  private async checkpoint(): Promise<void> {
    if (!this.grants || this.stopping) return;
    const grants = this.grants;
    try {
      await this.serially(async () => {
        const nowMs = this.clock.monotonicMs();
        const batch = this.options.store().batch();
        let any = false;
        for (const [id, record] of await grants.entries()) {
          if (record.state !== 'active' || record.bootId !== this.bootId) continue;
          batch.put(grants, id, { ...record, remainingMs: Math.min(record.remainingMs, checkpointRemaining(record.deadlineMs, nowMs)) });
          any = true;
        }
        if (any) await batch.commit();
      });
    } catch (err) {
      this.options.log.warn('cannot checkpoint the grants; a reboot now gives them less time', { err });
    }
  }

  private schedulePoll(): void {
    if (this.stopping) return;
    this.pollTimer = setTimeout(() => void this.pollLogins().finally(() => this.schedulePoll()), this.options.settings.loginPollSec * 1000);
    this.pollTimer.unref();
  }

  /** Reports each new session of a principal that holds an active grant. */
  private async pollLogins(): Promise<void> {
    if (!this.grants || this.stopping) return;
    try {
      const active = (await this.grants.entries()).filter(([, r]) => r.state === 'active');
      if (active.length === 0) return;
      const sessions = await this.options.host.sessions();
      const live = new Set(sessions.map((s) => s.id));
      for (const id of this.seenSessions) if (!live.has(id)) this.seenSessions.delete(id);
      for (const session of sessions) {
        if (this.seenSessions.has(session.id)) continue;
        const holders = active.filter(([, r]) => r.principal === session.principal);
        if (holders.length === 0) continue;
        await this.event(undefined, 'access-login', undefined, { principal: session.principal }, { session: session.id, tty: session.tty, grants: holders.map(([id]) => id) });
        this.seenSessions.add(session.id);
        this.options.log.info('access login', { principal: session.principal, session: session.id, tty: session.tty });
      }
    } catch (err) {
      this.options.log.debug('cannot list the access sessions', { err });
    }
  }
}

/** The settings from the config section and the daemon's paths. */
export function accessSettings(section: { principals: readonly string[]; maxDurationSec: number; sshdPort: number; tunnels: boolean; tunnelHosts: readonly string[]; tunnelKeyFile?: string | undefined; loginPollSec: number }, stateDir: string): AccessSettings {
  return {
    dir: join(stateDir, 'access'),
    principals: section.principals,
    maxDurationSec: section.maxDurationSec,
    sshdPort: section.sshdPort,
    tunnels: section.tunnels,
    tunnelHosts: section.tunnelHosts,
    tunnelKeyFile: section.tunnelKeyFile ?? join(stateDir, 'access', 'tunnel-key'),
    loginPollSec: section.loginPollSec,
  };
}

/** Re-exported for the handlers' argument schemas. */
export const fingerprintSchema = z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'must be an OpenSSH SHA256 fingerprint');
