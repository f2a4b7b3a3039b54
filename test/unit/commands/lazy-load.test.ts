/**
 * The daemon with commands on loads the code of rare command types on first use (issue 19's
 * memory budget): building the command wiring loads neither `logs` (fflate) nor the access
 * service (unless configured) nor the installer's modules. A child process records every module
 * it loads (test/fixtures/wiring-modules.ts); the access case shows the recording sees what the
 * wiring loads.
 */
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { lazyHandler } from '../../../runtime/commands/handlers/lazy.js';
import { logsSpec } from '../../../runtime/commands/handlers/logs-spec.js';
import type { HandlerContext } from '../../../runtime/commands/index.js';

const fixture = join(import.meta.dirname, '..', '..', 'fixtures', 'wiring-modules.ts');

async function loadedBy(t: Test, mode: string): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-modules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'modules.txt');
  await execa(process.execPath, ['--import', 'tsx', fixture, out, mode]);
  const lines = readFileSync(out, 'utf8').split('\n').filter((line) => line !== '');
  t.equal(lines.at(-1), 'wired');
  return lines;
}

const rare = [/\/fflate\//, /\/commands\/handlers\/logs\.[jt]s$/, /\/access\//, /\/installer\//, /\/execa\//];

t.test('without commands.access nothing rare is loaded', async (t) => {
  const loaded = await loadedBy(t, 'none');
  t.ok(loaded.some((url) => /\/commands\/handlers\/logs-spec\.[jt]s$/.test(url)), "logs' args schema is loaded for verification");
  for (const pattern of rare) t.same(loaded.filter((url) => pattern.test(url)), [], `not loaded: ${pattern}`);
});

t.test('with commands.access the access service is loaded at start (its grants expire across restarts), the rest still not', async (t) => {
  const loaded = await loadedBy(t, 'access');
  t.ok(loaded.some((url) => /\/access\/service\.[jt]s$/.test(url)));
  for (const pattern of [/\/fflate\//, /\/commands\/handlers\/logs\.[jt]s$/, /\/installer\/(server|deploy-gate)\.[jt]s$/]) t.same(loaded.filter((url) => pattern.test(url)), [], `not loaded: ${pattern}`);
});

t.test('lazyHandler: the spec at once, the code at the first run, once; a failed load is tried again', async (t) => {
  let loads = 0;
  let fail = true;
  const handler = lazyHandler(logsSpec, async () => {
    loads++;
    if (fail) throw new Error('unreadable');
    return { ...logsSpec, run: async (args) => ({ lines: args.lines }) };
  });
  t.equal(handler.args, logsSpec.args);
  t.equal(handler.timeoutMs, logsSpec.timeoutMs);
  t.equal(loads, 0, 'nothing loaded before the first run');
  const context = {} as HandlerContext;
  await t.rejects(handler.run({ lines: 1 }, context), /unreadable/);
  fail = false;
  t.same(await handler.run({ lines: 2 }, context), { lines: 2 });
  t.same(await handler.run({ lines: 3 }, context), { lines: 3 });
  t.equal(loads, 2);
});
