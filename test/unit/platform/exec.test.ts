import t from 'tap';
import { isOutpostError } from '../../../runtime/errors.js';
import { silentLogger } from '../../../runtime/logs/index.js';
import { createExec, stderrTail } from '../../../runtime/platform/index.js';

const exec = createExec(silentLogger);

t.test('runs without a shell and returns the output', async (t) => {
  t.same(await exec.run('printf', ['%s|', 'a b', '$(id)', '*']), { stdout: 'a b|$(id)|*|', stderr: '' }, 'arguments are not interpreted');
  t.equal((await exec.run('sh', ['-c', 'echo "$OUTPOST_X"'], { env: { OUTPOST_X: 'set' } })).stdout, 'set');
  t.ok((await exec.run('sh', ['-c', 'echo $PATH'], { env: { OUTPOST_X: 'set' } })).stdout.length > 0, 'env extends, not replaces');
  t.equal((await exec.run('cat', [], { input: 'from stdin' })).stdout, 'from stdin');
  t.equal((await exec.run('cat', [])).stdout, '', 'no input: stdin is closed, nothing hangs');
});

t.test('children never see NOTIFY_SOCKET or the watchdog variables: only the daemon speaks for the unit', async (t) => {
  const saved = { NOTIFY_SOCKET: process.env.NOTIFY_SOCKET, WATCHDOG_USEC: process.env.WATCHDOG_USEC, WATCHDOG_PID: process.env.WATCHDOG_PID };
  Object.assign(process.env, { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) });
  t.teardown(() => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  });
  const seen = await exec.run('sh', ['-c', 'echo "${NOTIFY_SOCKET-none} ${WATCHDOG_USEC-none} ${WATCHDOG_PID-none} $OUTPOST_X"'], { env: { OUTPOST_X: 'kept' } });
  t.equal(seen.stdout, 'none none none kept');
});

t.test('failures name the command, exit code and the end of stderr', async (t) => {
  const err = await exec.run('sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i >&2; done; exit 3']).catch((e: unknown) => e);
  t.ok(isOutpostError(err, 'EXEC_FAILED'));
  const message = (err as Error).message;
  t.match(message, /^sh -c .*: exit code 3\n/);
  t.match(message, /line3\n.*line10$/s);
  t.notMatch(message, /line2\n/, 'only the last 8 lines');
  t.notOk((err as { transient: boolean }).transient);

  const missing = await exec.run('outpost-no-such-tool', ['x']).catch((e: unknown) => e);
  t.ok(isOutpostError(missing, 'EXEC_FAILED'));
  t.match((missing as Error).message, /outpost-no-such-tool x: outpost-no-such-tool is not installed or not on PATH/);
});

t.test('a call past its timeout is killed and the error is transient', async (t) => {
  const started = Date.now();
  const err = await exec.run('sleep', ['30'], { timeoutMs: 200 }).catch((e: unknown) => e);
  t.ok(Date.now() - started < 5_000, 'returned promptly');
  t.ok(isOutpostError(err, 'EXEC_FAILED'));
  t.match((err as Error).message, /sleep 30: timed out after 200 ms and was killed/);
  t.ok((err as { transient: boolean }).transient);
});

t.test('output past the cap fails and says so; discarded or line-by-line stdout has no cap', async (t) => {
  const capped = createExec(silentLogger, { maxBufferBytes: 10 });
  await t.rejects(capped.run('printf', ['%s', 'x'.repeat(100)]), { code: 'EXEC_FAILED', message: /printf %s x+: printed more than the 10 bytes of output outpost keeps/ });
  t.same(await capped.run('printf', ['%s', 'x'.repeat(100)], { stdout: 'discard' }), { stdout: '', stderr: '' });
  const lines: string[] = [];
  t.same(await capped.run('seq', ['1000'], { stdout: (line) => lines.push(line) }), { stdout: '', stderr: '' }, 'lines handed over are not kept');
  t.equal(lines.length, 1000);
  t.same([lines[0], lines[999]], ['1', '1000']);
});

t.test('stderrTail keeps the last non-empty lines', async (t) => {
  t.equal(stderrTail('a\n\nb  \nc\n', 2), 'b\nc');
  t.equal(stderrTail(''), '');
});

t.test('ownGroup: nothing the command started outlives it, at the timeout, at the abort, or after it exited', async (t) => {
  const { mkdtempSync, readFileSync, rmSync, existsSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'outpost-exec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  const grandchild = async (file: string) => {
    for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
    return Number(readFileSync(file, 'utf8'));
  };
  const settle = () => new Promise((r) => setTimeout(r, 200));

  // A hung grandchild holding the output pipe: without the group kill the call waits on the pipe.
  const hung = join(dir, 'hung');
  const started = Date.now();
  const err = await exec.run('sh', ['-c', `sleep 100 & echo $! > ${hung}; wait`], { timeoutMs: 300, ownGroup: true }).catch((e: unknown) => e);
  t.match((err as Error).message, /timed out after 300 ms/);
  t.ok(Date.now() - started < 5_000, 'returned promptly');
  await settle();
  t.notOk(alive(await grandchild(hung)), 'the grandchild is gone at the timeout');

  const aborted = join(dir, 'aborted');
  const controller = new AbortController();
  const running = exec.run('sh', ['-c', `sleep 100 & echo $! > ${aborted}; wait`], { signal: controller.signal, ownGroup: true }).catch((e: unknown) => e);
  const pid = await grandchild(aborted);
  controller.abort();
  await running;
  await settle();
  t.notOk(alive(pid), 'the grandchild is gone at the abort');

  const background = join(dir, 'background');
  await exec.run('sh', ['-c', `sleep 100 >/dev/null 2>&1 & echo $! > ${background}`], { ownGroup: true });
  await settle();
  t.notOk(alive(await grandchild(background)), 'a background child is gone once the command exited');

  const kept = join(dir, 'kept');
  await exec.run('sh', ['-c', `sleep 2 >/dev/null 2>&1 & echo $! > ${kept}`]);
  const keptPid = await grandchild(kept);
  t.ok(alive(keptPid), 'without ownGroup a background child is left alone (tools outpost knows)');
  process.kill(keptPid, 'SIGKILL');
});

t.test('maxBufferBytes caps one call below the runner\'s cap, and the error says so', async (t) => {
  const err = await exec.run('sh', ['-c', 'head -c 5000 /dev/zero >&2'], { maxBufferBytes: 1000 }).catch((e: unknown) => e);
  t.match((err as Error).message, /printed more than the 1000 bytes of output outpost keeps and was stopped/);
  t.equal((await exec.run('sh', ['-c', 'head -c 5000 /dev/zero | tr "\\0" x'])).stdout.length, 5000, 'others keep the runner\'s cap');
});
