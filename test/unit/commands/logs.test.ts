/**
 * `logs`: the real journalctl (reading journal files through `--directory`, as
 * `commands.logs.journalDir` makes it) behind the real Exec. The journal files are written by
 * `systemd-journal-remote` from journal export format (no journald runs in the test container);
 * without it those cases are skipped and only the empty journal and the limits are tested.
 */
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { gunzipSync, strFromU8 } from 'fflate';
import { logsHandler, maxCompressedBytes, packLines, type LogsOutput } from '../../../runtime/commands/handlers/logs.js';
import type { HandlerContext } from '../../../runtime/commands/index.js';
import { createLogger } from '../../../runtime/logs/index.js';
import { createExec } from '../../../runtime/platform/index.js';
import { COMMAND_MAX_BYTES, COMMAND_RESULT_SCHEMA_ID, encodeCommandResult } from '../../../runtime/protocol/index.js';

const exec = createExec(createLogger({ level: 'error', sinks: [] }));
const journalRemote = ['/lib/systemd/systemd-journal-remote', '/usr/lib/systemd/systemd-journal-remote'].find((p) => existsSync(p));
const progress: { fraction?: number; message?: string }[] = [];
const context = { progress: (fraction?: number, message?: string) => void progress.push({ fraction, message }) } as HandlerContext;

function journalDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Entry {
  unit: string;
  message: string;
  /** Microseconds since the epoch. */
  at: number;
}

/** Writes `entries` as a journal file in `dir` through systemd-journal-remote. */
async function writeJournal(dir: string, entries: Entry[]): Promise<void> {
  const boot = randomBytes(16).toString('hex');
  const text = entries.map((e, i) => `__REALTIME_TIMESTAMP=${e.at}\n__MONOTONIC_TIMESTAMP=${i + 1}\n_BOOT_ID=${boot}\n_SYSTEMD_UNIT=${e.unit}\nPRIORITY=6\nMESSAGE=${e.message}\n\n`).join('');
  mkdirSync(dir, { recursive: true });
  await execa(journalRemote!, [`--output=${join(dir, 'test.journal')}`, '-'], { input: text });
}

function decode(output: LogsOutput): Record<string, string>[] {
  t.equal(output.encoding, 'gzip+base64');
  const text = strFromU8(gunzipSync(Buffer.from(output.data, 'base64')));
  t.equal(Buffer.byteLength(text), output.bytes);
  return text === '' ? [] : text.split('\n').map((line) => JSON.parse(line) as Record<string, string>);
}

const run = async (dir: string, args: unknown, unit = 'outpost.service') => {
  const handler = logsHandler({ exec, unit, journalDir: dir });
  const parsed = handler.args.safeParse(args);
  if (!parsed.success) throw new Error(parsed.error.issues[0]?.message);
  return (await handler.run(parsed.data, context)) as LogsOutput;
};

t.test('args: lines 1..5000 (default 200), since a short duration', async (t) => {
  const { args } = logsHandler({ exec, unit: 'outpost.service' });
  t.same(args.parse({}), { lines: 200 });
  t.same(args.parse({ lines: 5000, since: '15m' }), { lines: 5000, since: '15m' });
  for (const bad of [{ lines: 0 }, { lines: 5001 }, { since: '1 h' }, { since: '-1h' }, { since: '400d' }, { since: '1w' }, { other: 1 }]) t.notOk(args.safeParse(bad).success, JSON.stringify(bad));
});

t.test('an empty journal: no lines, valid (empty) data', async (t) => {
  const dir = journalDir(t);
  progress.length = 0;
  const output = await run(dir, {});
  t.match(output, { lines: 0, truncated: false, unit: 'outpost.service' });
  t.same(progress, [{ fraction: undefined, message: 'read 0 journal lines; compressing' }], 'progress before the compression');
  t.same(decode(output), []);
});

t.test('packLines keeps the newest lines that fit, compressed', async (t) => {
  const lines = Array.from({ length: 3000 }, (_, i) => `${i} ${randomBytes(40).toString('hex')}`);
  const packed = packLines(lines, 16 * 1024);
  t.ok(packed.compressed.length <= 16 * 1024);
  t.ok(packed.kept > 100 && packed.kept < 3000, `kept ${packed.kept}`);
  t.same(strFromU8(gunzipSync(packed.compressed)).split('\n'), lines.slice(-packed.kept), 'the newest, in order');
  t.equal(packLines(['a', 'b']).kept, 2);
});

t.test('a real journal: the unit\'s newest entries, --lines and --since honoured', { skip: journalRemote ? false : 'systemd-journal-remote is not installed' }, async (t) => {
  const dir = journalDir(t);
  const now = Date.now() * 1000;
  const hour = 3600 * 1e6;
  const entries: Entry[] = [];
  for (let i = 0; i < 300; i++) {
    entries.push({ unit: 'outpost.service', message: `outpost line ${i}`, at: now - 2 * hour + i });
    entries.push({ unit: 'other.service', message: `other line ${i}`, at: now - 2 * hour + i });
  }
  for (let i = 0; i < 5; i++) entries.push({ unit: 'outpost.service', message: `recent ${i}`, at: now - 60e6 + i });
  await writeJournal(dir, entries);

  const newest = await run(dir, { lines: 20 });
  const got = decode(newest);
  t.equal(newest.lines, 20);
  t.same(got.map((e) => e.MESSAGE), [...Array.from({ length: 15 }, (_, i) => `outpost line ${285 + i}`), ...Array.from({ length: 5 }, (_, i) => `recent ${i}`)], 'newest last, oldest first');
  t.ok(got.every((e) => e._SYSTEMD_UNIT === 'outpost.service'), 'only the unit');
  t.equal(newest.truncated, false);

  const since = await run(dir, { since: '1h' });
  t.same(decode(since).map((e) => e.MESSAGE), Array.from({ length: 5 }, (_, i) => `recent ${i}`));

  const other = await run(dir, { lines: 1 }, 'other.service');
  t.same(decode(other).map((e) => e.MESSAGE), ['other line 299'], 'commands.logs.unit picks the unit');
});

t.test('a journal too large for a result: the oldest lines dropped, truncated, the result under the limit', { skip: journalRemote ? false : 'systemd-journal-remote is not installed' }, async (t) => {
  const dir = journalDir(t);
  const now = Date.now() * 1000;
  // Random text does not compress: 5000 entries of ~1 KiB cannot fit in 44 KiB.
  await writeJournal(dir, Array.from({ length: 5000 }, (_, i) => ({ unit: 'outpost.service', message: `${i} ${randomBytes(512).toString('hex')}`, at: now - 10e6 + i })));
  const output = await run(dir, { lines: 5000 });
  t.equal(output.truncated, true);
  t.ok(output.compressedBytes <= maxCompressedBytes);
  const got = decode(output);
  t.equal(got.length, output.lines);
  t.ok(output.lines > 10 && output.lines < 5000, `kept ${output.lines}`);
  t.match(got[got.length - 1]?.MESSAGE, /^4999 /, 'the newest entry kept');
  const encoded = encodeCommandResult({ schema: COMMAND_RESULT_SCHEMA_ID, id: 'x'.repeat(128), deviceId: 'd'.repeat(64), type: 'logs', outcome: 'succeeded', message: 'done', output, startedAt: new Date().toISOString(), finishedAt: new Date().toISOString() });
  t.ok(Buffer.byteLength(encoded) <= COMMAND_MAX_BYTES, `the result is ${Buffer.byteLength(encoded)} bytes`);
});
