/**
 * The mutual-TLS socket the MQTT client runs over, built here instead of by mqtt.js's `connect()`.
 *
 * Why: mqtt.js's `connect(url)` loads every transport it supports on its first call (WebSocket
 * through `ws`, SOCKS through `socks` and `ip-address`), about 1 MiB of heap that the daemon then
 * holds for life without using it: outpost speaks `mqtts://` only. Handing `MqttClient` our own
 * stream builder keeps those modules unloaded.
 *
 * Invariant: this does what mqtt.js 5's `connect()` + `lib/connect/tls.js` do for an `mqtts` URL,
 * so the link behaves the same either way:
 * - host and port come from the URL, the port defaulting to 8883; `user:password@` in the URL
 *   becomes the CONNECT username and password (split at the last colon, as mqtt.js does);
 * - a handshake that completes without the broker being authorized is an error;
 * - a TLS error before the handshake completes is reported to the client and ends the socket;
 * - `MQTTJS_SOCKS_PROXY` in the environment still routes the connection through a SOCKS proxy,
 *   with mqtt.js's own SOCKS stream, loaded only in that case.
 */
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import type * as Tls from 'node:tls';
import { parse as parseLegacyUrl } from 'node:url';
import type { MqttClient } from 'mqtt';

const require = createRequire(import.meta.url);

/**
 * node:tls through require(), not `import`: the ESM facade of a builtin reads every export once,
 * and node:tls's `rootCertificates` getter then builds Node's whole CA bundle as JS strings
 * (~0.2 MiB, kept for life) that outpost never uses: the broker is trusted through broker.caFile.
 */
const tls = require('node:tls') as typeof Tls;

/** Where to connect and the TLS material to present. */
export interface TlsEndpoint {
  readonly host: string;
  readonly port: number;
  /** SNI name; undefined when the host is an IP address (RFC 6066 §3). */
  readonly servername?: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** A SOCKS proxy URL (mqtt.js's `MQTTJS_SOCKS_PROXY`), or undefined for a direct connection. */
  readonly socksProxy?: string;
}

/** Host, port and credentials of a broker URL, read the way mqtt.js 5 reads them. */
export interface BrokerAddress {
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: string;
}

/** Default MQTT-over-TLS port (IANA "secure-mqtt"), mqtt.js's default for `mqtts`. */
const defaultMqttsPort = 8883;

/**
 * Parses a broker URL with the legacy `url.parse` on purpose: it is what mqtt.js's `connect()`
 * uses, so host brackets, percent-decoding of credentials and port handling stay identical.
 */
export function brokerAddress(url: string): BrokerAddress {
  const parsed = parseLegacyUrl(url);
  const port = parsed.port === null ? defaultMqttsPort : Number(parsed.port);
  const address = { host: parsed.hostname ?? 'localhost', port: port === 0 ? defaultMqttsPort : port };
  if (parsed.auth === null || parsed.auth === '') return address;
  const credentials = /^(.+):(.+)$/.exec(parsed.auth);
  return credentials ? { ...address, username: credentials[1], password: credentials[2] } : { ...address, username: parsed.auth };
}

type SocksConnect = (host: string, port: number, proxy: string, options: { timeout?: number }) => Duplex;

/** mqtt.js's SOCKS stream, required on first use: only a proxied device pays for it. */
function socksConnect(): SocksConnect {
  return (require('mqtt/lib/connect/socks') as { default: SocksConnect }).default;
}

/** A stream builder for `new MqttClient(builder, options)`: one new TLS socket per call. */
export function tlsStreamBuilder(endpoint: TlsEndpoint): (client: MqttClient) => Tls.TLSSocket {
  return (client) => {
    const { host, port, servername, ca, cert, key, socksProxy } = endpoint;
    const options: Tls.ConnectionOptions = { host, port, ca, cert, key, rejectUnauthorized: true, ...(servername === undefined ? {} : { servername }) };
    const socket =
      socksProxy === undefined ? tls.connect(options) : tls.connect({ ...options, socket: socksConnect()(host, port, socksProxy, {}) });
    const onEarlyError = (err: Error): void => {
      client.emit('error', err);
      socket.end();
    };
    socket.on('secureConnect', () => {
      if (!socket.authorized) socket.emit('error', new Error('TLS not authorized'));
      else socket.removeListener('error', onEarlyError);
    });
    socket.on('error', onEarlyError);
    // A command's PUBACK and its result leave a few ms apart: with Nagle on, the result waits for
    // the broker's delayed ACK (~40 ms), most of a round trip once signatures verify in OpenSSL.
    socket.setNoDelay(true);
    return socket;
  };
}
