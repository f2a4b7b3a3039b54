import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { createLink } from '../../../runtime/link/index.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { thrown } from '../../fixtures/expect-error.js';

t.test('createLink refuses missing TLS files up front, naming the config field', async (t) => {
  const err = thrown(() =>
    createLink({
      broker: {
        url: 'mqtts://127.0.0.1:1',
        caFile: '/nonexistent/ca.pem',
        certFile: '/nonexistent/device.pem',
        keyFile: '/nonexistent/device.key',
        keepaliveSec: 60,
        connectTimeoutMs: 1000,
        reconnectMinMs: 100,
        reconnectMaxMs: 1000,
      },
      deviceId: 'gw-1',
      log: silentLogger,
      version: '0.0.0',
    }),
  );
  t.ok(isOutpostError(err, 'LINK_TLS_FILES'));
  t.match(err instanceof Error ? err.message : '', /^broker\.caFile \(\/nonexistent\/ca\.pem\) does not exist/);
});
