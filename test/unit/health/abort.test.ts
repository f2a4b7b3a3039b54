import t from 'tap';
import { abortable, CallsStillHung, maxAbandonedCalls, ProbeAborted } from '../../../runtime/health/kinds/abort.js';

t.test('abandoned calls that still hang stop new ones from starting, so checks on a hung mount cannot take the thread pool', async (t) => {
  const hung: (() => void)[] = [];
  const hangingCall = () => new Promise<string>((resolve) => hung.push(() => resolve('late')));
  for (let i = 0; i < maxAbandonedCalls; i++) {
    const controller = new AbortController();
    const waiting = abortable(controller.signal, hangingCall);
    controller.abort();
    await t.rejects(waiting, ProbeAborted, 'the probe stops waiting at its abort');
  }
  let started = false;
  await t.rejects(abortable(new AbortController().signal, async () => { started = true; return 'x'; }), CallsStillHung);
  t.notOk(started, 'not started while the others hang');
  hung.shift()?.();
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(await abortable(new AbortController().signal, async () => 'fresh'), 'fresh', 'one came back: calls start again');
  for (const release of hung) release();
  await new Promise((resolve) => setImmediate(resolve));
});
