import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { thrown } from '../../fixtures/expect-error.js';
import {
  cmdResultTopic,
  cmdTopic,
  desiredDeviceTopic,
  desiredGroupTopic,
  deviceTopics,
  eventsTopic,
  logsTopic,
  onlineTopic,
  parseOnlinePayload,
  stateTopic,
} from '../../../runtime/protocol/index.js';

t.test('topic names follow docs/protocol.md', async (t) => {
  t.equal(stateTopic('gw-1'), 'outpost/v1/gw-1/state');
  t.equal(onlineTopic('gw-1'), 'outpost/v1/gw-1/online');
  t.equal(cmdTopic('gw-1'), 'outpost/v1/gw-1/cmd');
  t.equal(cmdResultTopic('gw-1'), 'outpost/v1/gw-1/cmd/result');
  t.equal(eventsTopic('gw-1'), 'outpost/v1/gw-1/events');
  t.equal(logsTopic('gw-1'), 'outpost/v1/gw-1/logs');
  t.equal(desiredDeviceTopic('gw-1'), 'outpost/v1/desired/device/gw-1');
  t.equal(desiredGroupTopic('eu.west_2'), 'outpost/v1/desired/group/eu.west_2');
  t.same(deviceTopics('A.b_c-9'), {
    state: 'outpost/v1/A.b_c-9/state',
    online: 'outpost/v1/A.b_c-9/online',
    cmd: 'outpost/v1/A.b_c-9/cmd',
    cmdResult: 'outpost/v1/A.b_c-9/cmd/result',
    events: 'outpost/v1/A.b_c-9/events',
    logs: 'outpost/v1/A.b_c-9/logs',
    desired: 'outpost/v1/desired/device/A.b_c-9',
  });
});

t.test('ids that would change topic structure are refused', async (t) => {
  for (const bad of ['', 'a/b', '+', '#', 'gw+1', 'gw#', '-lead', '.hidden', 'sp ace', 'x'.repeat(65), 'nul\u0000', 'é']) {
    t.ok(isOutpostError(thrown(() => stateTopic(bad)), 'PROTOCOL_INVALID'), `device id ${JSON.stringify(bad)}`);
    t.ok(isOutpostError(thrown(() => desiredGroupTopic(bad)), 'PROTOCOL_INVALID'), `group ${JSON.stringify(bad)}`);
  }
  t.equal(stateTopic('x'.repeat(64)), `outpost/v1/${'x'.repeat(64)}/state`, '64 characters is the limit');
});

t.test('online payload is a plain string', async (t) => {
  t.equal(parseOnlinePayload('true'), true);
  t.equal(parseOnlinePayload(Buffer.from('false')), false);
  t.equal(parseOnlinePayload('TRUE'), undefined);
  t.equal(parseOnlinePayload('"true"'), undefined);
  t.equal(parseOnlinePayload(''), undefined);
});
