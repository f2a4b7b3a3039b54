import t from 'tap';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger, isJournalStream, journalSink, streamSink } from '../../../runtime/logs/index.js';
import { loadNative } from '../../../runtime/platform/index.js';
import { updateMessageIds } from '../../../runtime/update/message-ids.js';
import { startNotifyReceiver } from '../../fixtures/notify-receiver.js';

t.test('journald\'s stream is recognised by JOURNAL_STREAM = device:inode of the descriptor, nothing else', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fd = openSync(join(dir, 'stream'), 'w');
  const other = openSync(join(dir, 'redirected'), 'w');
  t.teardown(() => [fd, other].forEach((d) => closeSync(d)));
  const stat = fstatSync(fd, { bigint: true });
  const env = { JOURNAL_STREAM: `${stat.dev}:${stat.ino}` };
  t.equal(isJournalStream(fd, env), true);
  t.equal(isJournalStream(other, env), false, 'stdout redirected elsewhere (e.g. to a file by a test) is not the journal');
  t.equal(isJournalStream(fd, {}), false, 'not started by systemd');
  t.equal(isJournalStream(9999, env), false, 'a closed descriptor');
});

t.test('on journald\'s stream each line carries its syslog priority, so journalctl -p warning shows warnings', async (t) => {
  const lines = (journal: boolean) => {
    const out = new PassThrough();
    const log = createLogger({ level: 'debug', sinks: [streamSink(out, journal)], now: () => new Date(0) });
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e', { err: new Error('boom') });
    return String(out.read()).trimEnd().split('\n');
  };
  t.same(lines(true).map((l) => l.slice(0, 3)), ['<7>', '<6>', '<4>', '<3>']);
  t.same(JSON.parse(lines(true)[2]?.slice(3) ?? ''), { time: '1970-01-01T00:00:00.000Z', level: 'warn', component: 'outpost', msg: 'w' }, 'the rest is the JSON record');
  t.ok(lines(false).every((l) => l.startsWith('{')), 'elsewhere plain JSON lines');
});

t.test('a record with a MESSAGE_ID reaches journald\'s native socket as an entry with fields; without one, or refused, it stays a line', async (t) => {
  const native = loadNative();
  if (!native.addon) return t.fail(`the native addon is part of the build: ${native.reason}`);
  const addon = native.addon;
  const dir = mkdtempSync(join(tmpdir(), 'outpost-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A real AF_UNIX datagram socket in journald's place, sent to by the addon as the daemon does.
  const journal = await startNotifyReceiver(join(dir, 'journal.sock'));
  t.teardown(() => journal.close());
  const out = new PassThrough();
  let refuse = false;
  const log = createLogger({ sinks: [journalSink((datagram) => (refuse ? -11 : addon.notify(datagram, journal.address)), streamSink(out, true))], now: () => new Date(0) });
  log.child('update').warn('release 3 rolled back: health\nchecks failed', { messageId: updateMessageIds.rolledBack, version: 3, bootId: 'b1', nested: { a: 1 } });
  const entry = (await journal.next()).data;
  const fields = Object.fromEntries(entry.trimEnd().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  t.match(fields, { MESSAGE_ID: '670ab36464f3488bb8d62fe06a5b3725', PRIORITY: '4', SYSLOG_IDENTIFIER: 'outpost', OUTPOST_COMPONENT: 'outpost.update', OUTPOST_VERSION: '3', OUTPOST_BOOT_ID: 'b1' });
  t.match(JSON.parse(fields.MESSAGE ?? '{}'), { level: 'warn', msg: 'release 3 rolled back: health\nchecks failed', nested: { a: 1 } }, 'MESSAGE is the JSON line stdout would carry');
  t.equal(entry.split('\n').length, Object.keys(fields).length + 1, 'one line per field: the newline in the message stayed escaped');
  t.equal(out.read(), null, 'and it is not written twice');
  log.info('plain');
  refuse = true;
  log.info('committed', { messageId: updateMessageIds.committed });
  const lines = String(out.read()).trimEnd().split('\n');
  t.same(lines.map((l) => (JSON.parse(l.slice(3)) as { msg: string }).msg), ['plain', 'committed'], 'a record without an id, and one the socket refused, are lines');
  t.same(journal.pending(), []);
});
