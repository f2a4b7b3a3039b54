/**
 * Turns what mqtt.js and Node's TLS layer report into one sentence an operator can act on: which
 * side rejected which certificate, which config field to look at. The raw code is kept at the
 * end so the message can still be searched for.
 */
import type { BrokerConfig } from '../config/index.js';

/** Codes Node reports when the broker's certificate does not chain to broker.caFile. */
const untrustedServerCodes = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

/** TLS alerts the broker sends when it does not accept our client certificate. */
const clientCertAlerts = /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_REQUIRED|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|DECRYPT_ERROR|HANDSHAKE_FAILURE)$/;

function codeOf(err: unknown): string | number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' || typeof code === 'number' ? code : undefined;
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** A one-line, actionable description of a connection failure. */
export function describeLinkError(err: unknown, broker: BrokerConfig): string {
  const message = err instanceof Error ? err.message.split('\n')[0]?.trim() ?? '' : String(err);
  const code = codeOf(err);
  const tag = code === undefined ? '' : ` [${code}]`;
  const host = hostOf(broker.url);
  if (typeof code === 'string') {
    if (untrustedServerCodes.has(code)) {
      return `TLS certificate verify failed: the broker's certificate is not signed by a CA in broker.caFile (${broker.caFile}): ${message}${tag}`;
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
      return `TLS certificate verify failed: the broker's certificate is outside its validity period (or this device's clock is wrong): ${message}${tag}`;
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return `TLS certificate verify failed: the broker's certificate is not valid for ${host}; broker.url must name a host in its subjectAltName: ${message}${tag}`;
    }
    if (code.startsWith('ERR_SSL_') && clientCertAlerts.test(code)) {
      return `the broker rejected this device's client certificate broker.certFile (${broker.certFile}); it must be signed by a CA the broker trusts and be valid now${tag}`;
    }
    if (code === 'ECONNREFUSED') return `broker ${host} refused the TCP connection (not running or wrong port)${tag}`;
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve broker host ${host}${tag}`;
    if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `broker ${host} is unreachable: ${message}${tag}`;
    if (code === 'ECONNRESET' || code === 'EPIPE') return `connection to broker ${host} was reset${tag}`;
    if (code === 'LINK_TLS_FILES') return message;
  }
  if (typeof code === 'number') {
    // MQTT 5 CONNACK/DISCONNECT reason codes arrive as numbers (mqtt.js ErrorWithReasonCode).
    return `broker ${host} closed the session: ${message} (MQTT reason code ${code})`;
  }
  if (message === 'connack timeout') return `broker ${host} did not answer CONNECT within broker.connectTimeoutMs (${broker.connectTimeoutMs} ms)`;
  if (message === 'Keepalive timeout') return `broker ${host} stopped answering pings (keepalive ${broker.keepaliveSec} s)`;
  return `${message || 'unknown error'}${tag}`;
}
