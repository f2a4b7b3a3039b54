/**
 * `npm run demo`: a throwaway loopback world — a CA and certificates, mosquitto with mutual TLS,
 * a device config, the outpost daemon — showing the device come online, then tearing it all down.
 * Everything lives in one temp dir; nothing outside it is touched.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { packageRoot } from '../runtime/version.js';
import { createPki } from './world/pki.js';
import { startMosquitto, type Mosquitto } from './world/mosquitto.js';
import { heading, show, until } from './demo/ui.js';

const deviceId = 'gw-demo-0001';
const root = packageRoot() ?? process.cwd();
const outpost = join(root, 'dist', 'runtime', 'cli', 'outpost.js');
const dir = mkdtempSync(join(tmpdir(), 'outpost-demo-'));
let broker: Mosquitto | undefined;
let daemon: ResultPromise | undefined;

async function main(): Promise<void> {
  heading(`A throwaway world in ${dir}`);
  const pki = await createPki({ dir: join(dir, 'pki'), deviceId });
  show(`CA, broker certificate (127.0.0.1) and device certificate CN=${deviceId} made with openssl`);
  mkdirSync(join(dir, 'broker'));
  broker = await startMosquitto({ dir: join(dir, 'broker'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  show(`mosquitto listening on ${broker.url} with require_certificate true`);

  const configPath = join(dir, 'config.json');
  const config = {
    deviceId,
    paths: { stateDir: join(dir, 'device', 'state'), runDir: join(dir, 'device', 'run') },
    broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key, reconnectMinMs: 200, reconnectMaxMs: 5000 },
  };
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  heading('Device configuration (outpost config validate)');
  show(JSON.stringify(config, null, 2));
  const validate = await execa('node', [outpost, 'config', 'validate', configPath], { reject: false });
  show(validate.stdout || validate.stderr);

  heading('Watching the device topics with mosquitto_sub');
  const sub = execa('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', pki.ca.cert, '--cert', pki.observer.cert, '--key', pki.observer.key, '-t', `outpost/v1/${deviceId}/#`, '-v', '-C', '2', '-W', '30'], { reject: false });

  heading('Starting the daemon: outpost run');
  daemon = execa('node', [outpost, 'run'], { env: { OUTPOST_CONFIG: configPath }, reject: false, all: true, buffer: true });
  const online = await sub;
  show(online.stdout || `(nothing seen: ${online.stderr})`);

  heading('outpost status');
  const socket = join(config.paths.runDir, 'api.sock');
  await until('the API socket', () => (existsSync(socket) ? true : undefined));
  const status = await until('a connected link', async () => {
    const r = await execa('node', [outpost, 'status'], { env: { OUTPOST_CONFIG: configPath }, reject: false });
    return r.stdout.includes('connected') ? r.stdout : undefined;
  });
  show(status);

  heading('Stopping the daemon (SIGTERM): the broker shows the device offline');
  const offline = execa('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '--cafile', pki.ca.cert, '--cert', pki.observer.cert, '--key', pki.observer.key, '-t', `outpost/v1/${deviceId}/online`, '-v', '-C', '2', '-W', '15'], { reject: false });
  await new Promise((resolve) => setTimeout(resolve, 500));
  daemon.kill('SIGTERM');
  const result = await daemon;
  show((await offline).stdout);
  show(`daemon exited with ${result.exitCode}; its last log lines:`);
  show(String(result.all ?? '').trim().split('\n').slice(-3).join('\n'));
}

async function teardown(): Promise<void> {
  daemon?.kill('SIGKILL');
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
}

try {
  await main();
  heading('Done: world torn down');
} catch (err) {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await teardown();
}
