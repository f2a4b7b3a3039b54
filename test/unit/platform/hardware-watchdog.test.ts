import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadNative, openHardwareWatchdog, type NativeLoad, type OutpostNative } from '../../../runtime/platform/index.js';

const native = loadNative({ env: {} });

/** The shape every refusal has: a stable code, the path and errno in the message, errno as cause. */
function unavailable(message: RegExp, errno?: string): { name: string; code: string; message: RegExp; cause?: { code: string } } {
  const wanted = { name: 'OutpostError', code: 'WATCHDOG_UNAVAILABLE', message };
  return errno === undefined ? wanted : { ...wanted, cause: { code: errno } };
}

t.test('real device calls (addon)', async (t) => {
  t.ok(native.addon, `addon loaded (${native.reason ?? 'ok'})`);
  const dir = mkdtempSync(join(tmpdir(), 'outpost-wd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  t.test('nonexistent device → ENOENT', async (t) => {
    const path = join(dir, 'watchdog');
    t.throws(() => openHardwareWatchdog(path, 30, native), unavailable(new RegExp(`${path}: open failed: ENOENT`), 'ENOENT'));
  });

  t.test('a regular file opens, but the watchdog ioctl fails with ENOTTY and it is closed magically', async (t) => {
    const path = join(dir, 'not-a-watchdog');
    writeFileSync(path, '');
    t.throws(() => openHardwareWatchdog(path, 30, native), unavailable(/not-a-watchdog: setting the timeout to 30 s failed: ENOTTY/, 'ENOTTY'));
    t.equal(readFileSync(path, 'utf8'), 'V', "the magic 'V' was written before close, to disarm");
  });

  t.test('the raw addon returns negative errno, never throws for errno', async (t) => {
    const addon = native.addon;
    if (!addon) return t.fail('addon missing');
    t.equal(addon.wdOpen(join(dir, 'missing')), -constants.errno.ENOENT);
    t.equal(addon.wdKeepalive(999_999), -constants.errno.EBADF);
    t.equal(addon.wdGetTimeout(999_999), -constants.errno.EBADF);
    t.equal(addon.wdClose(999_999, false), -constants.errno.EBADF);
    t.throws(() => addon.wdKeepalive('x' as unknown as number), TypeError, 'wrong types are programming errors');
  });

  // Opening arms the timer and a failed test would reset the host, so this runs only on request.
  const skip = !existsSync('/dev/watchdog')
    ? 'no /dev/watchdog on this host'
    : process.env.OUTPOST_TEST_WATCHDOG !== '1' && 'opening /dev/watchdog arms it: set OUTPOST_TEST_WATCHDOG=1';
  t.test('/dev/watchdog (softdog or hardware)', { skip }, async (t) => {
    const wd = openHardwareWatchdog('/dev/watchdog', 60, native);
    t.teardown(() => wd.close({ disarm: true }));
    t.ok(wd.timeoutSec > 0);
    wd.keepalive();
  });
});

/** A simulated addon recording calls: the paths a real /dev/watchdog would take but cannot here. */
function fakeAddon(overrides: Partial<OutpostNative> = {}): { load: NativeLoad; calls: string[] } {
  const calls: string[] = [];
  const addon: OutpostNative = {
    notify: () => 1,
    wdOpen: (path) => (calls.push(`open ${path}`), 7),
    wdKeepalive: (fd) => (calls.push(`keepalive ${fd}`), 0),
    wdSetTimeout: (fd, s) => (calls.push(`settimeout ${fd} ${s}`), s + 1),
    wdGetTimeout: (fd) => (calls.push(`gettimeout ${fd}`), 45),
    wdClose: (fd, magic) => (calls.push(`close ${fd} ${magic}`), 0),
    peerCredentials: () => -38,
    ...overrides,
  };
  return { load: { addon }, calls };
}

t.test('simulated device: lifecycle', async (t) => {
  const { load, calls } = fakeAddon();
  const wd = openHardwareWatchdog('/dev/watchdog0', 30, load);
  t.equal(wd.timeoutSec, 31, 'reports the timeout the driver chose');
  wd.keepalive();
  wd.close({ disarm: false });
  wd.close({ disarm: true });
  t.throws(() => wd.keepalive(), unavailable(/keepalive after close/));
  t.same(calls, ['open /dev/watchdog0', 'settimeout 7 30', 'keepalive 7', 'close 7 false'], 'fd never touched after close');
});

t.test('simulated device: drivers without settable timeout keep their own', async (t) => {
  const { load, calls } = fakeAddon({ wdSetTimeout: () => -constants.errno.EOPNOTSUPP });
  t.equal(openHardwareWatchdog('/dev/watchdog0', 30, load).timeoutSec, 45);
  t.same(calls, ['open /dev/watchdog0', 'gettimeout 7']);
});

t.test('simulated device: keepalive and close failures carry the errno', async (t) => {
  const { load } = fakeAddon({ wdKeepalive: () => -constants.errno.EIO, wdClose: () => -constants.errno.EIO });
  const wd = openHardwareWatchdog('/dev/watchdog0', 30, load);
  t.throws(() => wd.keepalive(), unavailable(/keepalive failed: EIO/, 'EIO'));
  t.throws(() => wd.close({ disarm: true }), unavailable(/magic close failed: EIO/, 'EIO'));
});

t.test('refused before touching the device', async (t) => {
  t.throws(() => openHardwareWatchdog('/dev/watchdog', 30, { addon: undefined, reason: 'disabled by OUTPOST_NATIVE=0' }), unavailable(/native addon unavailable \(disabled by OUTPOST_NATIVE=0\)/));
  const { load, calls } = fakeAddon();
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => openHardwareWatchdog('/dev/watchdog', bad, load), unavailable(/timeoutSec must be a positive integer/));
  }
  t.same(calls, [], 'an invalid timeout never opens (and so never arms) the device');
});
