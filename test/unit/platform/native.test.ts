import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadNative } from '../../../runtime/platform/index.js';
import { packageRoot } from '../../../runtime/version.js';

t.test('packageRoot walks up to outpost package.json (from runtime/ or dist/runtime/)', async (t) => {
  const root = packageRoot();
  t.ok(root);
  if (root === undefined) return;
  t.equal(packageRoot(join(root, 'dist', 'runtime', 'platform')), root);
  const dir = mkdtempSync(join(tmpdir(), 'outpost-root-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'other', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'outpost' }));
  writeFileSync(join(dir, 'other', 'package.json'), JSON.stringify({ name: 'not-outpost' }));
  t.equal(packageRoot(join(dir, 'other', 'sub')), dir, 'skips package.json files of other packages');
});

t.test('loads the built addon', async (t) => {
  const loaded = loadNative({ env: {} });
  t.ok(loaded.addon, loaded.reason ?? 'loaded');
  t.equal(loaded.addon?.notify('READY=1\n'), 0, 'no socket path: protocol no-op');
});

t.test('reasons when unavailable', async (t) => {
  t.same(loadNative({ env: { OUTPOST_NATIVE: '0' } }), { addon: undefined, reason: 'disabled by OUTPOST_NATIVE=0' });
  const dir = mkdtempSync(join(tmpdir(), 'outpost-nobuild-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.match(loadNative({ env: {}, root: dir }), { addon: undefined, reason: /outpost_native\.node not built/ });
  mkdirSync(join(dir, 'native', 'build', 'Release'), { recursive: true });
  writeFileSync(join(dir, 'native', 'build', 'Release', 'outpost_native.node'), 'not an ELF file');
  t.match(loadNative({ env: {}, root: dir }), { addon: undefined, reason: /failed to load/ });
});
