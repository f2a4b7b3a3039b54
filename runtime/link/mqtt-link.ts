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
 * - Idle memory is part of the contract (bench/README.md): the client is built on our own TLS
 *   stream (tls-stream.ts) rather than mqtt.js's `connect()`, and without mqtt-packet's number
 *   cache (`writeCache: false`), which together keep ~8 MiB of heap the daemon would never use.
 */
import { isIP } from 'node:net';
import { MqttClient, type IClientOptions } from 'mqtt';
import { OutpostError } from '../errors.js';
import type { BrokerConfig } from '../config/index.js';
import type { Logger } from '../logs/index.js';
import { ONLINE_PAYLOAD, deviceTopics, encodeStateDocument, type StateDocument } from '../protocol/index.js';
import { backoffDelayMs } from './backoff.js';
import { describeLinkError } from './describe-error.js';
import { StatusBox, type LinkStatus, type LinkStatusListener } from './status.js';
import { loadTlsMaterial } from './tls-files.js';
import { brokerAddress, tlsStreamBuilder } from './tls-stream.js';

/**
 * How long the broker keeps this device's session (subscriptions, queued QoS 1 messages) while it
 * is offline. A week covers a long weekend without power; commands carry their own expiry.
 */
export const SESSION_EXPIRY_SEC = 7 * 24 * 3600;

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
}

/** The device's connection to the fleet broker. */
export interface Link {
  /** Begins connecting in the background; never blocks startup. Idempotent. */
  start(): void;
  /** Publishes online=false (retained) if connected, then disconnects; resolves within stopTimeoutMs. */
  stop(): Promise<void>;
  /** Retained QoS 1 on the state topic now if connected, and again after every (re)connect. */
  publishState(doc: StateDocument): void;
  /** The current status snapshot. */
  readonly status: LinkStatus;
  /** Registers a status listener; returns the function that removes it. */
  onStatus(listener: LinkStatusListener): () => void;
}

function serverName(host: string): string | undefined {
  // SNI must not carry an IP address (RFC 6066 §3); certificate checks still use the IP SAN.
  return isIP(host) === 0 ? host : undefined;
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
  const topics = deviceTopics(deviceId);
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
        properties: { sessionExpiryInterval: SESSION_EXPIRY_SEC, userProperties: { 'outpost-version': version } },
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

    c.on('connect', (connack) => {
      if (client !== c) return;
      connected = true;
      attempt = 0;
      lastLoggedFailure = undefined;
      status.update({ state: 'connected', connected: true });
      log.info('connected to broker', { url: broker.url, sessionPresent: connack.sessionPresent });
      publishRetained(c, topics.online, ONLINE_PAYLOAD.online).catch(() => undefined);
      if (latestState !== undefined) publishRetained(c, topics.state, latestState).catch(() => undefined);
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
    get status() {
      return status.current;
    },
    onStatus(listener) {
      return status.subscribe(listener);
    },
  };
}
