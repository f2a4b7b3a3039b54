/**
 * Loads the broker mTLS material named in config and checks it is usable before any connect, so
 * a wrong path or a key that does not belong to the certificate is reported as exactly that
 * (file and config field), not as an opaque handshake failure minutes later.
 */
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { OutpostError } from '../errors.js';
import type { BrokerConfig } from '../config/index.js';

/** PEM contents ready for `tls.connect`. */
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

type FileField = 'caFile' | 'certFile' | 'keyFile';

function fail(broker: BrokerConfig, field: FileField, problem: string, cause?: unknown): never {
  throw new OutpostError('LINK_TLS_FILES', `broker.${field} (${broker[field]}) ${problem}`, { cause });
}

function read(broker: BrokerConfig, field: FileField): Buffer {
  try {
    return readFileSync(broker[field]);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by this user' : 'cannot be read';
    return fail(broker, field, `${why}${code === undefined ? '' : ` (${code})`}; fix the path or the file's permissions`, err);
  }
}

/**
 * Reads and checks caFile, certFile and keyFile; throws `LINK_TLS_FILES` naming the field.
 * Called at every connect attempt, so certificates renewed on disk are picked up without a restart.
 */
export function loadTlsMaterial(broker: BrokerConfig): TlsMaterial {
  const ca = read(broker, 'caFile');
  const cert = read(broker, 'certFile');
  const key = read(broker, 'keyFile');
  try {
    new X509Certificate(ca);
  } catch (err) {
    fail(broker, 'caFile', 'does not contain a PEM certificate', err);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    return fail(broker, 'certFile', 'does not contain a PEM certificate', err);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    return fail(broker, 'keyFile', 'does not contain an unencrypted PEM private key', err);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    fail(broker, 'keyFile', `is not the private key of broker.certFile (${broker.certFile})`);
  }
  return { ca, cert, key };
}
