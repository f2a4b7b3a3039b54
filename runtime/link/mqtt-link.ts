/**
 * The device's MQTT 5 session with the fleet broker: mutual TLS, persistent session, retained
 * `online` flag with a last will, and the retained state document.
 *
 * Invariants:
 * - Offline is a normal state. createLink() and start() never throw or block; failures become
 *   `status.lastError` and a retry after a jittered, capped, exponentially growing delay
 *   (backoff.ts). That includes a broken config (unreadable TLS files): the daemon must keep
 *   running its updates, or a release on trial would never be blessed or rolled back.
 * - One mqtt.js client per connection attempt, built with reconnectPeriod 0: the reconnect policy
 *   is ours alone, and events of an abandoned client are ignored (`client !== c`), so a late
 *   'close' from an old socket can never change the status or schedule a second retry loop.
 * - Every (re)connect publishes `online`='true' then the latest state, both retained QoS 1, so
 *   the broker's retained copies are right even after it lost them (restart without persistence).
 * - `publish` settles exactly once and never hangs: at PUBACK, or with LINK_UNAVAILABLE when not
 *   connected, when its connection closes first, or after `publishTimeoutMs`. It keeps no queue of
 *   its own: what must survive an outage waits in the persistent outbox (outbox.ts, drain.ts).
 * - With an `inbox`, a command is acknowledged only after it is stored: the PUBACK of a delivered
 *   message is sent once `inbox` resolved, and when it rejects the connection is ended without that
 *   PUBACK, so the broker (persistent session) delivers the message again after the reconnect.
 *   mqtt.js handles one incoming packet at a time and waits for that callback, so the inbox must
 *   not wait for anything that needs the link.
 * - Idle memory is part of the contract (bench/README.md): the client is built on our own TLS
 *   stream (tls-stream.ts) rather than mqtt.js's `connect()`, and without mqtt-packet's number
 *   cache (`writeCache: false`), which together keep ~8 MiB of heap the daemon would never use.
 */
import { isIP } from 'node:net';
import { MqttClient, type IClientOptions, type IPublishPacket } from 'mqtt';
import { OutpostError } from '../errors.js';
import type { BrokerConfig } from '../config/index.js';
import type { Logger } from '../logs/index.js';
import { ONLINE_PAYLOAD, deviceTopics, encodeStateDocument, groupCmdTopic, type StateDocument } from '../protocol/index.js';
import { backoffDelayMs } from './backoff.js';
import { describeLinkError } from './describe-error.js';
import { StatusBox, type LinkStatus, type LinkStatusListener } from './status.js';
import { loadTlsMaterial } from './tls-files.js';
import { brokerAddress, tlsStreamBuilder } from './tls-stream.js';

/**
 * The largest packet the device accepts (CONNECT's Maximum Packet Size). Commands are refused as
 * `oversized` above 64 KiB with an answer; this leaves room for that answer up to 256 KiB, and
 * above it the broker drops the message unanswered.
 */
export const MAX_INBOUND_PACKET_BYTES = 256 * 1024;

/** Default upper bound for stop(): publishing online=false and disconnecting. */
export const DEFAULT_STOP_TIMEOUT_MS = 3_000;

/** What createLink needs. */
export interface LinkOptions {
  readonly broker: BrokerConfig;
  readonly deviceId: string;
  readonly log: Logger;
  /** Outpost version, sent as the CONNECT user property `outpost-version`. */
  readonly version: string;
  /** Source of jitter, [0, 1); injectable so tests can pin delays. */
  readonly random?: () => number;
  /** Clock for status timestamps. */
  readonly now?: () => Date;
  /** Bound for stop(); default DEFAULT_STOP_TIMEOUT_MS. */
  readonly stopTimeoutMs?: number;
  /** Environment read at each connect attempt (`MQTTJS_SOCKS_PROXY`, as mqtt.js honours it); default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Bound for publish() to see its PUBACK; default 3 × broker.connectTimeoutMs. */
  readonly publishTimeoutMs?: number;
  /**
   * Where messages on the device's `cmd` topic go; the link subscribes to it (QoS 1) on every
   * connect when given. Must resolve only once the message is stored: its PUBACK waits for that.
   * A rejection ends the connection without the PUBACK, and the broker delivers it again.
   */
  readonly inbox?: (message: InboxMessage) => Promise<void>;
  /** Groups whose command topic (`outpost/v1/group/<group>/cmd`) also goes to the inbox. */
  readonly commandGroups?: readonly string[];
}

/** A message delivered to the device (its `cmd` topic), as the inbox gets it. */
export interface InboxMessage {
  readonly topic: string;
  readonly payload: Buffer;
  /** MQTT 5 response topic, when the sender gave one. */
  readonly responseTopic?: string;
  /** MQTT 5 correlation data, when the sender gave it. */
  readonly correlationData?: Buffer;
}

/** Options of Link.publish. */
export interface PublishOptions {
  /** MQTT 5 correlation data (echoed from the command a result answers). */
  readonly correlationData?: Uint8Array;
}

/** The device's connection to the fleet broker. */
export interface Link {
  /** Begins connecting in the background; never blocks startup. Idempotent. */
  start(): void;
  /** Publishes online=false (retained) if connected, then disconnects; resolves within stopTimeoutMs. */
  stop(): Promise<void>;
  /** Retained QoS 1 on the state topic now if connected, and again after every (re)connect. */
  publishState(doc: StateDocument): void;
  /**
   * QoS 1, not retained. Resolves at PUBACK; rejects with LINK_UNAVAILABLE at once when not
   * connected, when the connection drops before the PUBACK, or after publishTimeoutMs (all
   * transient), and with LINK_UNAVAILABLE marked not transient when the broker refused the message
   * (PUBACK reason code ≥ 0x80: sending it again cannot help).
   */
  publish(topic: string, payload: string | Uint8Array, options?: PublishOptions): Promise<void>;
  /** The device id this link connects as (its topics are built from it). */
  readonly deviceId: string;
  /** The current status snapshot. */
  readonly status: LinkStatus;
  /** Registers a status listener; returns the function that removes it. */
  onStatus(listener: LinkStatusListener): () => void;
}

function serverName(host: string): string | undefined {
  // SNI must not carry an IP address (RFC 6066 §3); certificate checks still use the IP SAN.
  return isIP(host) === 0 ? host : undefined;
}

/** A publish waiting for its PUBACK, with the client it went out on. */
interface PendingPublish {
  readonly client: MqttClient;
  fail(reason: string): void;
}

/** The reason code of an mqtt.js ack error (a refused PUBACK), if it is one. */
function reasonCodeOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

function withTimeout(work: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    work.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}

/**
 * Creates the link. Checks the TLS files once up front so a misconfigured device says so at
 * start, as an error naming the config field, with the link down (`offline`, `lastError`); they
 * are read again on every connect attempt, so fixing them on disk brings the link up.
 */
export function createLink(options: LinkOptions): Link {
  const { broker, deviceId, log, version } = options;
  const random = options.random ?? Math.random;
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const env = options.env ?? process.env;
  const publishTimeoutMs = options.publishTimeoutMs ?? broker.connectTimeoutMs * 3;
  const inbox = options.inbox;
  const topics = deviceTopics(deviceId);
  const commandTopics = [topics.cmd, ...(options.commandGroups ?? []).map(groupCmdTopic)];
  const address = brokerAddress(broker.url);
  const servername = serverName(address.host);

  const status = new StatusBox(options.now ?? (() => new Date()), (err) => log.error('link status listener threw', { err }));
  let client: MqttClient | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let started = false;
  let stopping: Promise<void> | undefined;
  let latestState: string | undefined;
  let lastLoggedFailure: string | undefined;
  const pending = new Set<PendingPublish>();
  /** Connections ended in a row because the inbox could not store a command: the retry backs off. */
  let inboxFailures = 0;

  const failPending = (c: MqttClient, reason: string): void => {
    for (const p of [...pending]) if (p.client === c) p.fail(reason);
  };

  try {
    loadTlsMaterial(broker);
  } catch (err) {
    const reason = describeLinkError(err, broker);
    log.error('broker TLS files are unusable: the link stays down until they are fixed; outpost runs on without it', { reason, url: broker.url });
    status.update({ lastError: reason });
    // The retries fail the same way: already said, at error level.
    lastLoggedFailure = reason;
  }

  const publishRetained = (c: MqttClient, topic: string, payload: string): Promise<void> =>
    new Promise((resolve, reject) => {
      c.publish(topic, payload, { qos: 1, retain: true }, (err) => {
        if (err === undefined || err === null) {
          resolve();
          return;
        }
        log.warn('retained publish failed; it is repeated on the next connect', { topic, err });
        reject(err);
      });
    });

  const scheduleRetry = (reason: string, wasConnected: boolean): void => {
    const delayMs = backoffDelayMs(attempt, broker.reconnectMinMs, broker.reconnectMaxMs, random);
    attempt += 1;
    status.update({ state: 'offline', lastError: reason });
    // The same failure repeating every backoff period is one incident, not one per retry.
    const fields = { reason, attempt, retryInMs: delayMs, url: broker.url };
    if (wasConnected || reason !== lastLoggedFailure) log.warn(wasConnected ? 'broker connection lost' : 'cannot connect to broker', fields);
    else log.debug('still cannot connect to broker', fields);
    lastLoggedFailure = reason;
    retryTimer = setTimeout(connectOnce, delayMs);
  };

  /** Gates the PUBACK of each delivered message on the inbox having stored it (see the invariants). */
  const attachInbox = (c: MqttClient, deliver: (message: InboxMessage) => Promise<void>, fail: (reason: string) => void): void => {
    c.handleMessage = (packet: IPublishPacket, callback: (err?: Error) => void): void => {
      // An abandoned client's connection is going away: no PUBACK, the broker delivers it again.
      if (client !== c) return;
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload, 'utf8') : packet.payload;
      const { responseTopic, correlationData } = packet.properties ?? {};
      const message: InboxMessage = {
        topic: packet.topic,
        payload,
        ...(responseTopic === undefined ? {} : { responseTopic }),
        ...(correlationData === undefined ? {} : { correlationData: Buffer.from(correlationData) }),
      };
      let delivering: Promise<void>;
      try {
        delivering = deliver(message);
      } catch (err) {
        delivering = Promise.reject(err);
      }
      delivering.then(
        () => {
          inboxFailures = 0;
          if (client === c) callback();
        },
        (err: unknown) => {
          if (client !== c) return;
          inboxFailures += 1;
          log.error('a delivered command could not be stored; reconnecting without acknowledging it, so the broker delivers it again', { topic: packet.topic, err });
          fail(`a delivered command could not be stored: ${err instanceof Error ? err.message : String(err)}`);
          // No DISCONNECT: the stream is cut, 'close' follows and schedules the retry as for any drop.
          c.end(true);
        },
      );
    };
  };

  function connectOnce(): void {
    retryTimer = undefined;
    if (stopping !== undefined) return;
    let c: MqttClient;
    try {
      const tls = loadTlsMaterial(broker);
      // Only after the files load: a link held down by its config stays `offline` (and its
      // `since` steady) instead of flickering through `connecting` on every retry.
      status.update({ state: 'connecting' });
      const socksProxy = env.MQTTJS_SOCKS_PROXY;
      const mqttOptions: IClientOptions = {
        protocolVersion: 5,
        clientId: deviceId,
        clean: false,
        keepalive: broker.keepaliveSec,
        connectTimeout: broker.connectTimeoutMs,
        reconnectPeriod: 0,
        queueQoSZero: false,
        // mqtt-packet otherwise pre-builds 65,536 two-byte Buffers on the first packet (~7 MiB
        // of heap held for the process's life) to save one 2-byte allocation per length field.
        writeCache: false,
        // The broker drops what is larger rather than send it: a message of hundreds of MB on the
        // command topic would otherwise be read into memory and stored before any check.
        properties: { sessionExpiryInterval: broker.sessionExpirySec, maximumPacketSize: MAX_INBOUND_PACKET_BYTES, userProperties: { 'outpost-version': version } },
        will: { topic: topics.online, payload: Buffer.from(ONLINE_PAYLOAD.offline), qos: 1, retain: true },
        ...(address.username === undefined ? {} : { username: address.username }),
        ...(address.password === undefined ? {} : { password: address.password }),
      };
      const stream = tlsStreamBuilder({ host: address.host, port: address.port, servername, ca: tls.ca, cert: tls.cert, key: tls.key, ...(socksProxy === undefined ? {} : { socksProxy }) });
      c = new MqttClient(stream, mqttOptions);
    } catch (err) {
      scheduleRetry(describeLinkError(err, broker), false);
      return;
    }
    client = c;
    let connected = false;
    let failure: string | undefined;
    if (inbox !== undefined) attachInbox(c, inbox, (reason) => (failure ??= reason));

    c.on('connect', (connack) => {
      if (client !== c) return;
      connected = true;
      // Not 0 while the inbox keeps failing: each of those connections ends at once.
      attempt = inboxFailures;
      lastLoggedFailure = undefined;
      status.update({ state: 'connected', connected: true });
      log.info('connected to broker', { url: broker.url, sessionPresent: connack.sessionPresent });
      publishRetained(c, topics.online, ONLINE_PAYLOAD.online).catch(() => undefined);
      if (latestState !== undefined) publishRetained(c, topics.state, latestState).catch(() => undefined);
      if (inbox !== undefined) {
        // The session keeps the subscription, but a session the broker lost (restart without
        // persistence, expiry) does not: subscribing again on every connect costs one SUBACK.
        c.subscribe(commandTopics, { qos: 1 }, (err, granted) => {
          if (client !== c) return;
          const refused = granted?.filter((g) => g.qos >= 0x80).map((g) => g.topic) ?? [];
          if (err !== undefined && err !== null) log.warn('cannot subscribe to the command topics; subscribing again on the next connect', { topics: commandTopics, err });
          else if (refused.length > 0) log.error('the broker refused the subscription to command topics (ACL?): no remote commands reach this device on them', { topics: refused });
        });
      }
    });
    c.on('disconnect', (packet) => {
      if (client !== c) return;
      // 142 = session taken over: another client uses this device id (cloned identity?).
      const why = packet.reasonCode === 142 ? 'another client connected with this device id (session taken over)' : `reason code ${packet.reasonCode ?? 0}`;
      failure ??= `broker sent DISCONNECT: ${why}`;
    });
    c.on('error', (err) => {
      if (client !== c) return;
      // The first error of a connection is the cause; later ones (resets after an alert) are noise.
      failure ??= describeLinkError(err, broker);
    });
    c.on('close', () => {
      // This client's own publishes, even for an abandoned client: they can no longer be acked.
      failPending(c, 'the connection to the broker closed before the PUBACK');
      if (client !== c) return;
      client = undefined;
      c.end(true);
      scheduleRetry(failure ?? (connected ? 'connection to broker closed' : 'connection closed before the broker accepted the session'), connected);
    });
  }

  const stopNow = async (): Promise<void> => {
    if (retryTimer !== undefined) clearTimeout(retryTimer);
    retryTimer = undefined;
    const c = client;
    client = undefined;
    if (c !== undefined) {
      const deadline = Date.now() + stopTimeoutMs;
      if (c.connected) {
        // A clean DISCONNECT suppresses the will, so the offline flag has to be published by hand.
        const acked = await withTimeout(publishRetained(c, topics.online, ONLINE_PAYLOAD.offline), stopTimeoutMs);
        if (!acked) log.warn('online=false was not acknowledged in time; disconnecting anyway', { stopTimeoutMs });
      }
      const ended = await withTimeout(c.endAsync(!c.connected), Math.max(0, deadline - Date.now()));
      if (!ended) c.stream?.destroy();
      failPending(c, 'the link stopped before the PUBACK');
    }
    status.update({ state: 'stopped' });
    log.info('link stopped');
  };

  return {
    start() {
      if (started || stopping !== undefined) return;
      started = true;
      log.info('link starting', { url: broker.url, deviceId, version });
      connectOnce();
    },
    stop() {
      stopping ??= stopNow();
      return stopping;
    },
    publishState(doc) {
      if (doc.deviceId !== deviceId) {
        throw new OutpostError('PROTOCOL_INVALID', `state document is for device ${doc.deviceId}, but this link is ${deviceId}`);
      }
      latestState = encodeStateDocument(doc);
      if (client?.connected === true) publishRetained(client, topics.state, latestState).catch(() => undefined);
    },
    publish(topic, payload, publishOptions = {}) {
      const c = client;
      if (c?.connected !== true) {
        return Promise.reject(new OutpostError('LINK_UNAVAILABLE', `not connected to the broker (${status.current.state}); cannot publish to ${topic}`));
      }
      return new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const settle = (err?: OutpostError): void => {
          if (!pending.delete(entry)) return;
          clearTimeout(timer);
          if (err === undefined) resolve();
          else reject(err);
        };
        const entry: PendingPublish = { client: c, fail: (reason) => settle(new OutpostError('LINK_UNAVAILABLE', `publish to ${topic} failed: ${reason}`)) };
        pending.add(entry);
        timer = setTimeout(() => entry.fail(`no PUBACK within ${publishTimeoutMs} ms`), publishTimeoutMs);
        const { correlationData } = publishOptions;
        c.publish(
          topic,
          typeof payload === 'string' ? payload : Buffer.from(payload),
          { qos: 1, retain: false, ...(correlationData === undefined ? {} : { properties: { correlationData: Buffer.from(correlationData) } }) },
          (err) => {
            if (err === undefined || err === null) {
              settle();
              return;
            }
            const code = reasonCodeOf(err);
            if (code !== undefined && code >= 0x80) {
              settle(new OutpostError('LINK_UNAVAILABLE', `the broker refused the message on ${topic}: ${err.message} (reason code ${code})`, { cause: err, transient: false }));
            } else entry.fail(err.message);
          },
        );
      });
    },
    deviceId,
    get status() {
      return status.current;
    },
    onStatus(listener) {
      return status.subscribe(listener);
    },
  };
}
