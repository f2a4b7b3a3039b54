/**
 * The baselines of the command round trip (bench/commands.ts): a bare mqtt.js client on the same
 * broker, with the same TLS and MQTT 5, that subscribes to one topic (QoS 1) and republishes each
 * message, QoS 1, to a reply topic. No store, no verification, no handler: what the broker and
 * mqtt.js cost alone. Prints `ready` once subscribed.
 *
 * With `durableDir` it is the durable echo instead: the same echo making only the commits
 * issue 19's semantics require, each a classic-level batch as the daemon's store makes them: the
 * message before its PUBACK, fsync'd ("persisted before PUBACK"; a device that checked it first
 * could record it as started in the same commit), the reply before it is published, fsync'd
 * ("exactly one final result": a reply sent before it is recorded would be followed by
 * `interrupted` after a crash), and the reply's removal after its PUBACK, not fsync'd (a power cut
 * that undoes it sends the reply again, as QoS 1 may).
 *
 * Usage: node echo-client.js <JSON { url, caFile, certFile, keyFile, inTopic, outTopic, noDelay?, durableDir? }>
 */
import { readFileSync } from 'node:fs';
import { connectAsync, type IPublishPacket } from 'mqtt';

const o = JSON.parse(process.argv[2] ?? '{}') as { url: string; caFile: string; certFile: string; keyFile: string; inTopic: string; outTopic: string; noDelay?: boolean; durableDir?: string };
const client = await connectAsync(o.url, { protocolVersion: 5, ca: readFileSync(o.caFile), cert: readFileSync(o.certFile), key: readFileSync(o.keyFile), reconnectPeriod: 0, clientId: `bench-echo-${process.pid}` });
if (o.noDelay === true) (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
if (o.durableDir === undefined) {
  client.on('message', (_topic, payload) => {
    client.publish(o.outTopic, payload, { qos: 1 });
  });
} else {
  const { ClassicLevel } = await import('classic-level');
  const db = new ClassicLevel<string, Buffer>(o.durableDir, { valueEncoding: 'buffer' });
  await db.open();
  const sync = { sync: true } as const;
  let sequence = 0;
  client.handleMessage = (packet: IPublishPacket, callback: (err?: Error) => void): void => {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload, 'utf8') : packet.payload;
    const key = String(sequence++).padStart(16, '0');
    void (async () => {
      await db.batch([{ type: 'put', key: `in/${key}`, value: payload }], sync);
      callback();
      await db.batch([{ type: 'del', key: `in/${key}` }, { type: 'put', key: `out/${key}`, value: payload }], sync);
      await client.publishAsync(o.outTopic, payload, { qos: 1 });
      await db.batch([{ type: 'del', key: `out/${key}` }], { sync: false });
    })().catch((err: unknown) => {
      process.stderr.write(`durable echo: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  };
}
await client.subscribeAsync(o.inTopic, { qos: 1 });
process.stdout.write('ready\n');
