/**
 * A throw-away PKI for tests and the demo, made with the openssl CLI (the tool operators use, so
 * the files look like the ones a real fleet has): a CA, a broker certificate for 127.0.0.1 and
 * localhost, a device client certificate with CN = device id, an observer client certificate, and
 * an unrelated "wrong" CA with a client certificate of its own for negative tests.
 *
 * EC P-256 keys: generated in milliseconds, accepted by mosquitto and Node alike.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';

/** A certificate and its private key, as file paths. */
export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

/** Every file `createPki` made. */
export interface Pki {
  readonly dir: string;
  /** The CA both the broker and the devices trust. */
  readonly ca: CertPair;
  /** Broker certificate, SAN IP:127.0.0.1 and DNS:localhost. */
  readonly server: CertPair;
  /** Device client certificate, CN = the device id. */
  readonly client: CertPair;
  /** A second good client certificate (CN = observerId) for subscribers watching the device. */
  readonly observer: CertPair;
  /** An unrelated CA: trusting it instead of `ca` must make the broker untrusted. */
  readonly wrongCa: CertPair;
  /** Client certificate for the same device id, but signed by `wrongCa`: the broker must refuse it. */
  readonly wrongClient: CertPair;
}

/** Options of `createPki`. */
export interface PkiOptions {
  /** Directory to write into; created if missing. */
  readonly dir: string;
  readonly deviceId: string;
  readonly observerId?: string;
  /** Validity of the leaf certificates. */
  readonly days?: number;
}

const curve = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function openssl(args: string[], cwd: string): Promise<void> {
  await execa('openssl', args, { cwd, stdin: 'ignore', timeout: 30_000 });
}

async function makeCa(dir: string, name: string, cn: string): Promise<CertPair> {
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await openssl(
    ['req', '-x509', ...curve, '-keyout', pair.key, '-out', pair.cert, '-days', '3650', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  return pair;
}

/** Which way a leaf certificate may be used. */
export type LeafUsage = 'server' | 'client';

/** Issues one leaf certificate signed by `ca` into `dir` as `<name>.crt`/`<name>.key`. */
export async function issueCert(options: {
  dir: string;
  ca: CertPair;
  name: string;
  cn: string;
  usage: LeafUsage;
  /** subjectAltName entries such as `IP:127.0.0.1`, `DNS:localhost`. */
  altNames?: string[];
  days?: number;
}): Promise<CertPair> {
  const { dir, ca, name, cn, usage } = options;
  const pair = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const lines = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usage === 'server' ? 'serverAuth' : 'clientAuth'}`,
  ];
  if (options.altNames !== undefined && options.altNames.length > 0) lines.push(`subjectAltName=${options.altNames.join(',')}`);
  await writeFile(ext, `${lines.join('\n')}\n`);
  await openssl(['req', '-new', ...curve, '-keyout', pair.key, '-out', csr, '-subj', `/CN=${cn}`], dir);
  await openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(12).toString('hex')}`,
      '-days', String(options.days ?? 30), '-extfile', ext, '-out', pair.cert],
    dir,
  );
  return pair;
}

/** Issues a client certificate with CN = `cn` from the PKI's good CA (e.g. for a second device). */
export function issueClientCert(pki: Pki, cn: string, name = `client-${cn}`): Promise<CertPair> {
  return issueCert({ dir: pki.dir, ca: pki.ca, name, cn, usage: 'client' });
}

/** Generates the whole PKI; takes well under a second. */
export async function createPki(options: PkiOptions): Promise<Pki> {
  const { dir, deviceId } = options;
  await mkdir(dir, { recursive: true });
  const days = options.days ?? 30;
  const [ca, wrongCa] = await Promise.all([
    makeCa(dir, 'ca', 'outpost test CA'),
    makeCa(dir, 'wrong-ca', 'unrelated test CA'),
  ]);
  const [server, client, observer, wrongClient] = await Promise.all([
    issueCert({ dir, ca, name: 'server', cn: 'localhost', usage: 'server', altNames: ['IP:127.0.0.1', 'DNS:localhost'], days }),
    issueCert({ dir, ca, name: 'client', cn: deviceId, usage: 'client', days }),
    issueCert({ dir, ca, name: 'observer', cn: options.observerId ?? 'outpost-observer', usage: 'client', days }),
    issueCert({ dir, ca: wrongCa, name: 'wrong-client', cn: deviceId, usage: 'client', days }),
  ]);
  return { dir, ca, server, client, observer, wrongCa, wrongClient };
}
