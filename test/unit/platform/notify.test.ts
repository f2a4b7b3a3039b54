import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { createLogger, type LogRecord } from '../../../runtime/logs/index.js';
import { createNotifier, loadNative } from '../../../runtime/platform/index.js';
import { startNotifyReceiver } from '../../fixtures/notify-receiver.js';


function capture(): { log: ReturnType<typeof createLogger>; records: LogRecord[] } {
  const records: LogRecord[] = [];
  return { log: createLogger({ level: 'debug', sinks: [(r) => records.push(r)] }), records };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const abstractName = (): string => `@outpost-test-${process.pid}-${Math.random().toString(36).slice(2)}`;

t.test('the native addon is built in this checkout (npm ci runs native/build.mjs)', async (t) => {
  const loaded = loadNative({ env: {} });
  t.equal(loaded.reason, undefined, 'no reason to be unavailable');
  t.ok(loaded.addon);
});

for (const kind of ['filesystem path', 'abstract name'] as const) {
  t.test(`native: READY and STATUS arrive over a ${kind}`, async (t) => {
    const address = kind === 'abstract name' ? abstractName() : join(tempDir(t), 'notify.sock');
    const receiver = await startNotifyReceiver(address);
    t.teardown(() => receiver.close());
    const { log, records } = capture();
    const notifier = createNotifier({ env: { NOTIFY_SOCKET: address }, log });
    t.equal(notifier.mechanism, 'native');

    await notifier.send({ READY: '1', STATUS: 'serving 3 checks' });
    const got = await receiver.next();
    t.equal(got.data, 'READY=1\nSTATUS=serving 3 checks\n');
    t.equal(got.pid, process.pid, 'sent from this process, so NotifyAccess=main suffices');
    t.equal(got.fds, 0);
    t.same(records, [], 'nothing logged on the native path');
  });
}

t.test('native: a newline in a value cannot inject another assignment', async (t) => {
  const address = abstractName();
  const receiver = await startNotifyReceiver(address);
  t.teardown(() => receiver.close());
  const notifier = createNotifier({ env: { NOTIFY_SOCKET: address }, log: capture().log });
  await notifier.send({ STATUS: 'disk full\nREADY=1' });
  t.equal((await receiver.next()).data, 'STATUS=disk full READY=1\n');
});

t.test('invalid field names are refused before anything is sent', async (t) => {
  const notifier = createNotifier({ env: { NOTIFY_SOCKET: abstractName() }, log: capture().log });
  await t.rejects(notifier.send({ 'ready': '1' }), { code: 'NOTIFY_FAILED', transient: false });
  await t.rejects(notifier.send({ 'A=B': '1' }), { code: 'NOTIFY_FAILED' });
});

t.test('NOTIFY_SOCKET unset: mechanism none, send is a no-op', async (t) => {
  for (const env of [{}, { NOTIFY_SOCKET: '' }]) {
    const { log, records } = capture();
    const notifier = createNotifier({ env, log, native: { addon: undefined, reason: 'must not matter' } });
    t.equal(notifier.mechanism, 'none');
    await t.resolves(notifier.send({ READY: '1' }));
    t.same(records, [], 'no fallback warning when nobody listens');
  }
});

t.test('native: receiver gone → NOTIFY_FAILED naming the errno', async (t) => {
  const dir = tempDir(t);
  const stale = join(dir, 'stale.sock');
  const abstract = abstractName();
  for (const address of [stale, abstract]) await (await startNotifyReceiver(address)).close();
  const cases: Array<[string, string, boolean]> = [
    [stale, 'ECONNREFUSED', true], // socket file left behind, nobody bound to it
    [abstract, 'ECONNREFUSED', true], // abstract names vanish with their socket
    [join(dir, 'never.sock'), 'ENOENT', true],
    ['relative.sock', 'EAFNOSUPPORT', false], // the protocol only allows '/' or '@'
    [`/${'x'.repeat(200)}`, 'E2BIG', false], // longer than sun_path
  ];
  for (const [address, errno, transient] of cases) {
    const notifier = createNotifier({ env: { NOTIFY_SOCKET: address }, log: capture().log });
    const err = await notifier.send({ READY: '1' }).then(() => undefined, (e: unknown) => e);
    t.ok(isOutpostError(err, 'NOTIFY_FAILED'), `${errno}: OutpostError NOTIFY_FAILED`);
    if (!isOutpostError(err)) continue;
    t.match(err.message, errno, `message names ${errno}`);
    t.match(err.cause, { code: errno, syscall: 'sd_notify' });
    t.equal(err.transient, transient, `${errno} transient: ${transient}`);
  }
});

t.test('native: a receiver that stops reading yields EAGAIN instead of blocking the event loop', async (t) => {
  const receiver = await startNotifyReceiver(abstractName(), { noRead: true });
  t.teardown(() => receiver.close());
  const notifier = createNotifier({ env: { NOTIFY_SOCKET: receiver.address }, log: capture().log });
  let failure: unknown;
  // The kernel queues a bounded number of datagrams (net.unix.max_dgram_qlen, the receive buffer).
  for (let i = 0; i < 10_000 && failure === undefined; i++) {
    failure = await notifier.send({ WATCHDOG: '1' }).then(() => undefined, (e: unknown) => e);
  }
  t.match(failure, { code: 'NOTIFY_FAILED', transient: true, cause: { code: 'EAGAIN' } });
});

t.test('native: closing the receiver cleanly', async (t) => {
  const receiver = await startNotifyReceiver(abstractName());
  await receiver.close();
  await receiver.close();
  t.pass('close is idempotent');
});

t.test('fallback: systemd-notify delivers when the addon is disabled (OUTPOST_NATIVE=0)', async (t) => {
  for (const address of [join(tempDir(t), 'notify.sock'), abstractName()]) {
    const receiver = await startNotifyReceiver(address);
    t.teardown(() => receiver.close());
    const { log, records } = capture();
    const notifier = createNotifier({ env: { NOTIFY_SOCKET: address, OUTPOST_NATIVE: '0' }, log });
    t.equal(notifier.mechanism, 'systemd-notify');

    await notifier.send({ READY: '1', STATUS: 'up' });
    await notifier.send({ WATCHDOG: '1' });
    const first = await receiver.next();
    // systemd-notify (252) adds MAINPID from --pid, and as root it sends our PID as the credential.
    t.equal(first.data, `MAINPID=${process.pid}\nREADY=1\nSTATUS=up`);
    if (process.getuid?.() === 0) t.equal(first.pid, process.pid, 'root may claim our PID');
    else t.not(first.pid, process.pid, 'unprivileged: sent as the helper, so NotifyAccess=all is needed');
    // It then waits until the receiver has read the message: BARRIER=1 carries a pipe fd.
    t.match(await receiver.next(), { data: 'BARRIER=1', fds: 1 });
    t.match(await receiver.next(), { data: `MAINPID=${process.pid}\nWATCHDOG=1` });
    t.match(await receiver.next(), { data: 'BARRIER=1' });

    t.equal(records.length, 1, 'the fallback is logged once, not per send');
    t.match(records[0], { level: 'warn', reason: 'disabled by OUTPOST_NATIVE=0' });
    t.match(records[0]?.msg, /NotifyAccess=all/);
  }
});

t.test('fallback: receiver gone → NOTIFY_FAILED with systemd-notify\'s reason', async (t) => {
  const address = join(tempDir(t), 'never.sock');
  const notifier = createNotifier({ env: { NOTIFY_SOCKET: address }, log: capture().log, native: { addon: undefined, reason: 'test' } });
  t.equal(notifier.mechanism, 'systemd-notify');
  const err = await notifier.send({ READY: '1' }).then(() => undefined, (e: unknown) => e);
  t.ok(isOutpostError(err, 'NOTIFY_FAILED'));
  t.match(err, { message: /systemd-notify to NOTIFY_SOCKET=.*never\.sock failed: .*No such file or directory/ });
});
