/**
 * A watching MQTT client for tests and the demo: subscribes with its own client certificate,
 * records every message (with its retain flag) and lets callers wait for one that matches.
 */
import { readFile } from 'node:fs/promises';
import { connect, type MqttClient } from 'mqtt';
import type { CertPair } from './pki.js';

/** One received message. */
export interface ObservedMessage {
  readonly topic: string;
  readonly payload: string;
  /** True when the broker delivered it as a retained message (i.e. it was stored before we subscribed). */
  readonly retain: boolean;
  readonly at: number;
}

/** A connected observer. */
export interface Observer {
  readonly client: MqttClient;
  readonly messages: readonly ObservedMessage[];
  /** Resolves with the first message (already received or future) matching; rejects after timeoutMs. */
  waitFor(topic: string, match?: (m: ObservedMessage) => boolean, timeoutMs?: number): Promise<ObservedMessage>;
  /** Disconnects and releases the socket. */
  close(): Promise<void>;
}

/** Options of `connectObserver`. */
export interface ObserverOptions {
  readonly url: string;
  readonly caFile: string;
  readonly identity: CertPair;
  /** Topic filters to subscribe to (QoS 1). */
  readonly topics: readonly string[];
  readonly clientId?: string;
  readonly connectTimeoutMs?: number;
}

/** Connects (clean session, no auto-reconnect), subscribes, and resolves once SUBACK arrived. */
export async function connectObserver(options: ObserverOptions): Promise<Observer> {
  const [ca, cert, key] = await Promise.all([readFile(options.caFile), readFile(options.identity.cert), readFile(options.identity.key)]);
  const client = connect(options.url, {
    protocolVersion: 5,
    clientId: options.clientId ?? `observer-${process.pid}-${Math.random().toString(16).slice(2, 10)}`,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? 5_000,
    ca,
    cert,
    key,
    rejectUnauthorized: true,
  });
  const messages: ObservedMessage[] = [];
  const waiters = new Set<(m: ObservedMessage) => void>();
  client.on('message', (topic, payload, packet) => {
    const message = { topic, payload: payload.toString('utf8'), retain: packet.retain, at: Date.now() };
    messages.push(message);
    for (const waiter of [...waiters]) waiter(message);
  });
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('close', () => reject(new Error(`observer could not connect to ${options.url}`)));
  });
  await client.subscribeAsync([...options.topics], { qos: 1 });

  return {
    client,
    messages,
    waitFor(topic, match = () => true, timeoutMs = 5_000) {
      const found = messages.find((m) => m.topic === topic && match(m));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = (m: ObservedMessage): void => {
          if (m.topic !== topic || !match(m)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(m);
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const seen = messages.filter((m) => m.topic === topic).map((m) => `${m.payload}${m.retain ? ' (retained)' : ''}`);
          reject(new Error(`no matching message on ${topic} within ${timeoutMs} ms; seen: ${JSON.stringify(seen)}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    async close() {
      await client.endAsync(true);
    },
  };
}
