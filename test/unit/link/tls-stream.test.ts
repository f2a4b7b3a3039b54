import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, Socket, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, MqttClient } from 'mqtt';
import { brokerAddress, tlsStreamBuilder } from '../../../runtime/link/tls-stream.js';
import { createPki } from '../../../scripts/world/pki.js';

// The contract is "read the URL the way mqtt.js's connect() does", so mqtt.js is the oracle.
t.test('brokerAddress reads host, port and credentials like mqtt.js connect()', async (t) => {
  const urls = [
    'mqtts://broker.example.com',
    'mqtts://broker.example.com/',
    'mqtts://Broker.Example.COM:8884',
    'mqtts://127.0.0.1:1883',
    'mqtts://[::1]:8883',
    'mqtts://[fe80::1]',
    'mqtts://device:secret@broker.example.com:8883',
    'mqtts://dev%40ice:pa:ss@broker.example.com',
    'mqtts://onlyuser@broker.example.com',
  ];
  for (const url of urls) {
    const reference = connect(url, { manualConnect: true, cert: 'unused', key: 'unused' });
    const ours = brokerAddress(url);
    t.equal(ours.host, reference.options.hostname ?? reference.options.host, `${url}: host`);
    // mqtt.js applies the 8883 default later, in its TLS stream builder.
    t.equal(ours.port, reference.options.port ?? 8883, `${url}: port`);
    t.equal(ours.username, reference.options.username, `${url}: username`);
    t.equal(ours.password, reference.options.password, `${url}: password`);
  }
});

t.test('a TLS failure before the handshake reaches the client as an error and ends the socket', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-tls-stream-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await createPki({ dir, deviceId: 'gw-1' });
  // A plain TCP server that answers the ClientHello with garbage: a TLS protocol error.
  const server = createServer((socket) => socket.end('not tls\r\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => void server.close());
  const { port } = server.address() as AddressInfo;
  const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.client.cert), readFile(pki.client.key)]);

  const client = new MqttClient(tlsStreamBuilder({ host: '127.0.0.1', port, ca, cert, key }), { reconnectPeriod: 0, writeCache: false });
  const errors: unknown[] = [];
  client.on('error', (err) => errors.push(err));
  await new Promise<void>((resolve) => client.once('close', () => resolve()));
  t.match((errors[0] as { code?: unknown } | undefined)?.code, /^(EPROTO|ERR_SSL_)/, 'the TLS error reached the client, with its code for describeLinkError');
  t.ok(client.stream.destroyed, 'socket ended');
  client.end(true);
});

t.test('the socket sends without Nagle delay (TCP_NODELAY): a result must not wait for the ACK of the PUBACK before it', async (t) => {
  // Node has no getter for TCP_NODELAY; every TLS socket inherits net.Socket's setter, so record it.
  const calls: unknown[] = [];
  const setNoDelay = Socket.prototype.setNoDelay;
  Socket.prototype.setNoDelay = function (this: Socket, noDelay?: boolean) {
    calls.push(noDelay);
    return setNoDelay.call(this, noDelay);
  };
  t.teardown(() => void (Socket.prototype.setNoDelay = setNoDelay));
  const dir = await mkdtemp(join(tmpdir(), 'outpost-tls-stream-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await createPki({ dir, deviceId: 'gw-1' });
  const [ca, cert, key] = await Promise.all([readFile(pki.ca.cert), readFile(pki.client.cert), readFile(pki.client.key)]);
  const socket = tlsStreamBuilder({ host: '127.0.0.1', port: 9, ca, cert, key })(new MqttClient(() => new Socket(), { manualConnect: true }));
  socket.on('error', () => undefined);
  t.teardown(() => void socket.destroy());
  t.same(calls, [true]);
});
