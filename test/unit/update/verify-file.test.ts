import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { verifyFile } from '../../../runtime/update/verify-file.js';

t.test('verifyFile: exactly the signed length and sha256 pass; missing, truncated, padded or altered files fail with DOWNLOAD_VERIFY', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-verify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const content = Buffer.from('static delta bytes '.repeat(5000));
  const sha256 = createHash('sha256').update(content).digest('hex');
  const file = join(dir, 'delta');
  writeFileSync(file, content);
  await verifyFile(file, content.length, sha256);
  await t.rejects(verifyFile(join(dir, 'absent'), content.length, sha256), { code: 'DOWNLOAD_VERIFY', message: /absent: missing \(signed metadata lists it with \d+ bytes\)/ });
  writeFileSync(file, content.subarray(0, content.length - 1));
  await t.rejects(verifyFile(file, content.length, sha256), { code: 'DOWNLOAD_VERIFY', message: /\d+ bytes, signed metadata says \d+ \(truncated or tampered\)/ });
  writeFileSync(file, Buffer.concat([content, Buffer.from('x')]));
  await t.rejects(verifyFile(file, content.length, sha256), { code: 'DOWNLOAD_VERIFY', message: /truncated or tampered/ });
  const altered = Buffer.from(content);
  altered[altered.length >> 1] = (altered[altered.length >> 1] ?? 0) ^ 1;
  writeFileSync(file, altered);
  await t.rejects(verifyFile(file, content.length, sha256), { code: 'DOWNLOAD_VERIFY', message: /does not match the signed [0-9a-f]{64} \(tampered or corrupt\)/ });
});
