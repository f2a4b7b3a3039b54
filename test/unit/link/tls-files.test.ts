import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isOutpostError } from '../../../runtime/errors.js';
import { thrown } from '../../fixtures/expect-error.js';
import { loadTlsMaterial } from '../../../runtime/link/tls-files.js';
import type { BrokerConfig } from '../../../runtime/config/index.js';
import { createPki } from '../../../scripts/world/pki.js';

t.test('TLS file checks name the file and the config field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-tls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await createPki({ dir, deviceId: 'gw-1' });
  const broker: BrokerConfig = {
    url: 'mqtts://127.0.0.1:8883',
    caFile: pki.ca.cert,
    certFile: pki.client.cert,
    keyFile: pki.client.key,
    keepaliveSec: 60,
    connectTimeoutMs: 15_000,
    reconnectMinMs: 1_000,
    reconnectMaxMs: 120_000,
    sessionExpirySec: 604_800,
  };
  const tls = loadTlsMaterial(broker);
  t.ok(tls.ca.length > 0 && tls.cert.length > 0 && tls.key.length > 0, 'good files load');

  const fails = (change: Partial<BrokerConfig>, pattern: RegExp, name: string): void => {
    const err = thrown(() => loadTlsMaterial({ ...broker, ...change }));
    t.ok(isOutpostError(err, 'LINK_TLS_FILES'), `${name}: LINK_TLS_FILES`);
    t.match(err instanceof Error ? err.message : '', pattern, `${name}: message`);
  };
  const missing = join(dir, 'missing.pem');
  fails({ caFile: missing }, new RegExp(`^broker\\.caFile \\(${missing}\\) does not exist`), 'missing CA');
  fails({ certFile: missing }, /^broker\.certFile .* does not exist/, 'missing cert');
  fails({ keyFile: missing }, /^broker\.keyFile .* does not exist/, 'missing key');
  fails({ certFile: dir }, /^broker\.certFile .* cannot be read \(EISDIR\)/, 'directory instead of a file');
  const garbage = join(dir, 'garbage.pem');
  await writeFile(garbage, 'not a pem\n');
  fails({ caFile: garbage }, /^broker\.caFile .* does not contain a PEM certificate/, 'garbage CA');
  fails({ certFile: garbage }, /^broker\.certFile .* does not contain a PEM certificate/, 'garbage cert');
  fails({ keyFile: garbage }, /^broker\.keyFile .* does not contain an unencrypted PEM private key/, 'garbage key');
  fails({ keyFile: pki.observer.key }, /^broker\.keyFile .* is not the private key of broker\.certFile/, 'key of another certificate');
});
