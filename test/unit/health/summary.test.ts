import t from 'tap';
import { summarize } from '../../../runtime/health/index.js';
import type { CheckState } from '../../../runtime/health/index.js';

const check = (name: string, severity: CheckState['severity'], status: CheckState['status']): CheckState => ({ name, severity, status, since: 't', streak: 0 });

t.test('failed, degraded, unknown, ok', async (t) => {
  t.equal(summarize([]), 'ok', 'nothing to check');
  t.equal(summarize([check('a', 'required', 'failing'), check('b', 'wanted', 'failing')]), 'failed');
  t.equal(summarize([check('a', 'required', 'passing'), check('b', 'wanted', 'failing')]), 'degraded');
  t.equal(summarize([check('a', 'wanted', 'unknown'), check('b', 'wanted', 'unknown')]), 'unknown');
  t.equal(summarize([check('a', 'wanted', 'unknown'), check('b', 'wanted', 'passing')]), 'ok');
});

t.test('a required check without a verdict keeps the summary unknown though others passed: never a false green', async (t) => {
  t.equal(summarize([check('app', 'required', 'unknown'), check('disk', 'wanted', 'passing')]), 'unknown');
  t.equal(summarize([check('app', 'required', 'unknown'), check('disk', 'wanted', 'failing')]), 'degraded', 'a failure still shows');
});
