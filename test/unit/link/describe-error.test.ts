import t from 'tap';
import { describeLinkError } from '../../../runtime/link/describe-error.js';
import type { BrokerConfig } from '../../../runtime/config/index.js';

const broker: BrokerConfig = {
  url: 'mqtts://broker.example:8883',
  caFile: '/etc/outpost/ca.pem',
  certFile: '/etc/outpost/device.pem',
  keyFile: '/etc/outpost/device.key',
  keepaliveSec: 30,
  connectTimeoutMs: 15_000,
  reconnectMinMs: 1_000,
  reconnectMaxMs: 120_000,
  sessionExpirySec: 604_800,
};

const withCode = (message: string, code: string | number): Error => Object.assign(new Error(message), { code });

t.test('untrusted broker certificate names broker.caFile', async (t) => {
  for (const code of ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT']) {
    const text = describeLinkError(withCode('self-signed certificate in certificate chain', code), broker);
    t.match(text, /^TLS certificate verify failed/);
    t.match(text, 'broker.caFile (/etc/outpost/ca.pem)');
    t.match(text, `[${code}]`);
  }
});

t.test('client certificate refused by the broker names broker.certFile', async (t) => {
  const text = describeLinkError(withCode('ssl3_read_bytes:tlsv1 alert unknown ca\nSSL alert number 48', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'), broker);
  t.match(text, /rejected this device's client certificate broker.certFile \(\/etc\/outpost\/device.pem\)/);
  t.notMatch(text, /\n/);
});

t.test('other failures', async (t) => {
  t.match(describeLinkError(withCode('x', 'CERT_HAS_EXPIRED'), broker), /clock/);
  t.match(describeLinkError(withCode('x', 'ERR_TLS_CERT_ALTNAME_INVALID'), broker), /not valid for broker.example:8883/);
  t.match(describeLinkError(withCode('connect ECONNREFUSED', 'ECONNREFUSED'), broker), /refused the TCP connection/);
  t.match(describeLinkError(withCode('Connection refused: Not authorized', 135), broker), /Not authorized \(MQTT reason code 135\)/);
  t.match(describeLinkError(new Error('connack timeout'), broker), /connectTimeoutMs \(15000 ms\)/);
  t.match(describeLinkError(new Error('Keepalive timeout'), broker), /keepalive 30 s/);
  t.equal(describeLinkError('weird', broker), 'weird');
});
