import t from 'tap';
import { createLink, type LinkStatus } from '../../../runtime/link/index.js';
import { createLogger, type LogRecord } from '../../../runtime/logs/index.js';

t.test('createLink with missing TLS files: the link is down with the reason, logged once as an error, never thrown', async (t) => {
  const records: LogRecord[] = [];
  const link = createLink({
    broker: {
      url: 'mqtts://127.0.0.1:1',
      caFile: '/nonexistent/ca.pem',
      certFile: '/nonexistent/device.pem',
      keyFile: '/nonexistent/device.key',
      keepaliveSec: 60,
      connectTimeoutMs: 1000,
      reconnectMinMs: 100,
      reconnectMaxMs: 200,
      sessionExpirySec: 3600,
    },
    deviceId: 'gw-1',
    log: createLogger({ level: 'debug', sinks: [(r) => records.push(r)] }),
    version: '0.0.0',
  });
  t.teardown(() => link.stop());
  t.equal(link.status.state, 'offline');
  t.match(link.status.lastError, /^broker\.caFile \(\/nonexistent\/ca\.pem\) does not exist/, 'names the config field and the file');

  const seen: LinkStatus[] = [];
  link.onStatus((s) => seen.push(s));
  link.start();
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.same(seen.map((s) => s.state).filter((s) => s !== 'offline'), [], 'retries stay offline, no connecting flicker');
  const errors = records.filter((r) => r.level === 'error');
  t.equal(errors.length, 1, 'one error, not one per retry');
  t.match(errors[0]?.['reason'], /broker\.caFile .* does not exist/);
  t.notOk(records.some((r) => r.level === 'warn'), 'the retries do not repeat it at warn');
});
