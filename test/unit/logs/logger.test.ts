import t from 'tap';
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger, isJournalStream, streamSink } from '../../../runtime/logs/index.js';

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
