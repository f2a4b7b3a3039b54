/**
 * The baseline of the command round trip (bench/commands.ts): a bare mqtt.js client on the same
 * broker, with the same TLS and MQTT 5, that subscribes to one topic (QoS 1) and republishes each
 * message, QoS 1, to a reply topic. No store, no verification, no handler: what the broker and
 * mqtt.js cost alone. Prints `ready` once subscribed.
 *
 * Usage: node echo-client.js <JSON { url, caFile, certFile, keyFile, inTopic, outTopic }>
 */
import { readFileSync } from 'node:fs';
import { connectAsync } from 'mqtt';

const o = JSON.parse(process.argv[2] ?? '{}') as { url: string; caFile: string; certFile: string; keyFile: string; inTopic: string; outTopic: string; noDelay?: boolean };
const client = await connectAsync(o.url, { protocolVersion: 5, ca: readFileSync(o.caFile), cert: readFileSync(o.certFile), key: readFileSync(o.keyFile), reconnectPeriod: 0, clientId: `bench-echo-${process.pid}` });
if (o.noDelay === true) (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
client.on('message', (_topic, payload) => {
  client.publish(o.outTopic, payload, { qos: 1 });
});
await client.subscribeAsync(o.inTopic, { qos: 1 });
process.stdout.write('ready\n');
