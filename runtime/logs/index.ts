/** Logs: structured records now; the ring buffer, sources and shipper join here later. */
export { createLogger, streamSink, isJournalStream, silentLogger, type Logger, type LogRecord, type LogSink, type Level } from './logger.js';
export { journalSink, journalSocketPath } from './journal.js';
