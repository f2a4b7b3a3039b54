/**
 * `set-config`: RFC 7386 merge patches on the overlay, the protected settings refused as bad args
 * naming the field, the whole layered config checked by the real loader before anything is
 * written, the previous overlay kept, and the restart asked for only after the result is queued.
 */
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../runtime/config/index.js';
import { mergePatch, protectedPathsTouched, setConfigHandler, type JsonObject } from '../../../runtime/commands/handlers/set-config.js';
import type { HandlerContext } from '../../../runtime/commands/index.js';

t.test('mergePatch follows RFC 7386 (its appendix A examples)', async (t) => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, expected] of cases) t.same(mergePatch(target as JsonObject, patch as JsonObject), expected, JSON.stringify(patch));
});

t.test('protected settings: at or below a protected path, or a section holding one replaced', async (t) => {
  t.same(protectedPathsTouched({ log: { level: 'debug' }, update: { checkIntervalSec: 60, deferral: { trials: 2 } } }), []);
  t.same(protectedPathsTouched({ update: { rootFile: '/tmp/evil.json' } }), ['update.rootFile']);
  t.same(protectedPathsTouched({ update: { probation: { windowSec: 60, checks: [{ name: 'x', command: ['sh'] }] } } }), ['update.probation.checks']);
  t.same(protectedPathsTouched({ update: null }), ['update'], 'removing the section would remove update.rootFile');
  t.same(protectedPathsTouched({ update: { probation: 'x' } }), ['update.probation']);
  t.same(protectedPathsTouched({ commands: { skewSec: 1 }, installer: null, paths: {}, deviceId: 'x', broker: { keepaliveSec: 30 }, api: {} }), ['commands', 'installer', 'paths', 'deviceId', 'broker', 'api']);
});

function device(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-set-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateDir = join(dir, 'state');
  const image = join(dir, 'config.json');
  writeFileSync(image, JSON.stringify({ deviceId: 'gw-1', paths: { stateDir, runDir: join(dir, 'run') }, broker: { url: 'mqtts://b', caFile: 'a', certFile: 'b', keyFile: 'c' }, update: { server: 'http://u', hardware: 'h' }, commands: {} }));
  mkdirSync(stateDir);
  const overlayFile = join(stateDir, 'config.json');
  const restarts: string[] = [];
  const answered: (() => void)[] = [];
  const handler = setConfigHandler({ overlayFile, check: (overlay) => void loadConfig({ path: image, env: {}, overlayDocument: overlay }), restart: (reason) => void restarts.push(reason) });
  const context = (id: string): HandlerContext => ({ command: { id } as HandlerContext['command'], signal: new AbortController().signal, whenAnswered: (action) => void answered.push(action), progress: () => undefined });
  const run = async (patch: unknown, id = 'c-1') => {
    const args = handler.args.safeParse({ patch });
    if (!args.success) throw new Error(`bad-args: ${args.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return handler.run(args.data, context(id));
  };
  return { overlayFile, image, restarts, answered, run };
}

t.test('a good patch lands in the overlay, the previous one kept; the restart follows the answer', async (t) => {
  const d = device(t);
  t.same(await d.run({ log: { level: 'debug' } }), { changed: true, restart: true });
  t.same(JSON.parse(readFileSync(d.overlayFile, 'utf8')), { log: { level: 'debug' } });
  t.same(JSON.parse(readFileSync(`${d.overlayFile}.previous`, 'utf8')), {}, 'no overlay before: the previous is the empty one');
  t.equal(statSync(d.overlayFile).mode & 0o777, 0o600);
  t.same(d.restarts, [], 'no restart before the result is answered');
  t.equal(d.answered.length, 1);
  t.equal(loadConfig({ path: d.image, env: {} }).log.level, 'debug', 'the next start loads it');

  t.same(await d.run({ update: { checkIntervalSec: 120 }, log: null }, 'c-2'), { changed: true, restart: true });
  t.same(JSON.parse(readFileSync(d.overlayFile, 'utf8')), { update: { checkIntervalSec: 120 } });
  t.same(JSON.parse(readFileSync(`${d.overlayFile}.previous`, 'utf8')), { log: { level: 'debug' } });

  t.same(await d.run({ update: { checkIntervalSec: 120 } }, 'c-3'), { changed: false, restart: false }, 'nothing to change: nothing written');
  t.same(JSON.parse(readFileSync(`${d.overlayFile}.previous`, 'utf8')), { log: { level: 'debug' } });
  t.equal(d.answered.length, 2);
});

t.test('the restart is asked for shortly after the result was queued', async (t) => {
  const d = device(t);
  await d.run({ log: { level: 'warn' } });
  d.answered[0]?.();
  await new Promise((r) => setTimeout(r, 1200));
  t.match(d.restarts, [/^set-config c-1: /]);
});

t.test('a patch the schema refuses fails naming the fields, and writes nothing', async (t) => {
  const d = device(t);
  await t.rejects(d.run({ update: { checkIntervalSec: 0, bogus: 1 }, log: { level: 'loud' } }), /refused, the patched config is invalid: .*update\.checkIntervalSec: Too small.*/);
  await t.rejects(d.run({ update: { bogus: 1 } }), /update\.bogus: unknown key/);
  await t.rejects(d.run({ log: { level: 'loud' } }), /log\.level: Invalid option/);
  t.notOk(existsSync(d.overlayFile), 'no overlay written');
  t.notOk(existsSync(`${d.overlayFile}.previous`));
  t.equal(d.answered.length, 0);
});

t.test('an overlay this release cannot read (not JSON, keys from a newer release) can be mended remotely', async (t) => {
  const d = device(t);
  writeFileSync(d.overlayFile, '{"log": ');
  t.same(await d.run({ log: null }, 'c-0'), { changed: true, restart: false }, 'even a patch that sets nothing replaces a torn overlay; the daemon already runs without it');
  t.equal(d.answered.length, 0, 'no restart asked for');
  t.same(JSON.parse(readFileSync(d.overlayFile, 'utf8')), {});
  writeFileSync(d.overlayFile, '{"log": ');
  t.same(await d.run({ log: { level: 'debug' } }), { changed: true, restart: true }, 'the patch applies to what the daemon runs with: no overlay');
  t.same(JSON.parse(readFileSync(d.overlayFile, 'utf8')), { log: { level: 'debug' } });
  t.equal(readFileSync(`${d.overlayFile}.previous`, 'utf8'), '{"log": ', 'the unreadable copy is kept as the previous one');

  writeFileSync(d.overlayFile, JSON.stringify({ log: { level: 'debug' }, health: { futureKey: 1 } }));
  await t.rejects(d.run({ log: { level: 'warn' } }, 'c-2'), /health\.futureKey: unknown key/, 'a patch that keeps the unknown key names it');
  t.same(await d.run({ health: { futureKey: null } }, 'c-3'), { changed: true, restart: true }, 'a patch removing it is taken');
  t.same(JSON.parse(readFileSync(d.overlayFile, 'utf8')), { log: { level: 'debug' }, health: {} });
});

t.test('protected settings are bad args naming the field; a patch must be an object', async (t) => {
  const d = device(t);
  await t.rejects(d.run({ update: { rootFile: '/tmp/root.json' } }), /bad-args: patch\.update\.rootFile: may not be changed by a remote command/);
  await t.rejects(d.run({ commands: { restartUnits: ['sshd.service'] } }), /bad-args: patch\.commands: may not/);
  await t.rejects(d.run({ update: { probation: { checks: [] } } }), /bad-args: patch\.update\.probation\.checks: may not/);
  await t.rejects(d.run(['x']), /bad-args: patch: /);
  t.notOk(existsSync(d.overlayFile));
});
