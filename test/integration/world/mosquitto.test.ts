import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMosquitto } from '../../../scripts/world/mosquitto.js';
import { createPki } from '../../../scripts/world/pki.js';

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => (socket.destroy(), resolve(false)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0); // succeeds for zombies too, so this also proves the child was reaped
    return true;
  } catch {
    return false;
  }
}

t.test('the world broker starts, restarts on the same port and leaves nothing behind', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'outpost-world-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pki = await createPki({ dir, deviceId: 'gw-1' });
  const broker = await startMosquitto({ dir, caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  t.teardown(() => broker.stop());
  t.equal(broker.url, `mqtts://127.0.0.1:${broker.port}`);
  t.ok(broker.running && (await listening(broker.port)), 'listening once start resolved');
  const config = await readFile(broker.configFile, 'utf8');
  t.match(config, /require_certificate true/);
  t.match(config, /use_identity_as_username true/);
  t.match(config, /persistence false/);
  const firstPid = broker.pid ?? -1;

  await broker.restart({ downMs: 100 });
  t.ok(await listening(broker.port), 'same port after restart');
  t.not(broker.pid, firstPid, 'a new process');
  t.notOk(alive(firstPid), 'the old process is gone and reaped');

  const secondPid = broker.pid ?? -1;
  await broker.stop();
  await broker.stop();
  t.notOk(broker.running);
  t.notOk(alive(secondPid), 'stopped broker is gone and reaped');
  t.notOk(await listening(broker.port), 'port released');
  t.match(await readFile(broker.logFile, 'utf8'), /mosquitto version .* terminating/);
});
