/**
 * Records that carry a `messageId` (the update outcomes) go to journald over its native protocol,
 * so they are found by MESSAGE_ID (`journalctl MESSAGE_ID=…`, alerts, catalogs) the way systemd's
 * own are; every other record stays a line on stdout. The stdout stream cannot carry fields.
 *
 * MESSAGE is the same JSON line stdout would have had, so one parser reads both; the record's
 * simple fields are also fields of the entry (OUTPOST_VERSION=2). An entry the socket refuses (no
 * journald, a full queue, too long) falls back to the stdout line: a record is never lost.
 */
import { errorReplacer, syslogPriority, type LogRecord, type LogSink } from './logger.js';

/** systemd-journald.socket's native socket (systemd.journal-fields(7)). */
export const journalSocketPath = '/run/systemd/journal/socket';

/** Journal field names: upper case, digits and `_`, not starting with `_` (trusted fields). */
function fieldName(key: string): string {
  return `OUTPOST_${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^A-Za-z0-9]/g, '_').toUpperCase()}`;
}

/**
 * The datagram for one record, in the protocol's simple `KEY=value\n` form: values with a newline
 * would need the binary form, and JSON and the fields below have none.
 */
export function journalEntry(record: LogRecord & { messageId: string }, identifier = 'outpost'): string {
  const { time: _time, level, component, msg: _msg, messageId, ...fields } = record;
  const lines = [`MESSAGE=${JSON.stringify(record, errorReplacer)}`, `MESSAGE_ID=${messageId}`, `PRIORITY=${syslogPriority[level]}`, `SYSLOG_IDENTIFIER=${identifier}`, `OUTPOST_COMPONENT=${component}`];
  for (const [key, value] of Object.entries(fields)) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') lines.push(`${fieldName(key)}=${String(value).replace(/\n/g, ' ')}`);
  }
  return `${lines.join('\n')}\n`;
}

/** `send` delivers one datagram (the addon's notify to the journal socket): 1 when sent. */
export function journalSink(send: (datagram: string) => number, fallback: LogSink): LogSink {
  return (record) => {
    const { messageId } = record;
    if (typeof messageId === 'string' && send(journalEntry({ ...record, messageId })) === 1) return;
    fallback(record);
  };
}
