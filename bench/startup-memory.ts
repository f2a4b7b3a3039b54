/**
 * Startup and idle memory: time from spawn to READY=1 for `outpost run` connected to a real
 * mosquitto over mTLS, and RssAnon/Rss after an idle period, side by side in the same run with a
 * bare node process and (when installed) `mender daemon`, the Debian-packaged Mender client.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { createPki } from '../scripts/world/pki.js';
import { startMosquitto } from '../scripts/world/mosquitto.js';
import { startNotifyReceiver } from '../test/fixtures/notify-receiver.js';
import { packageRoot } from '../runtime/version.js';
import { procMemory, type ProcMemory } from './proc.js';

/** One subject's measurements. */
export interface MemoryRow {
  subject: string;
  command: string;
  readyMs: number | null;
  idle: ProcMemory;
}

/** Node flags the systemd unit sets through NODE_OPTIONS (kept in one place with the unit). */
export const daemonNodeOptions = '--max-semi-space-size=1 --max-old-space-size=64 --jitless';

async function menderAvailable(): Promise<boolean> {
  return (await execa('mender', ['--version'], { reject: false })).exitCode === 0;
}

/** Runs the benchmark in `dir`; idles `idleSec` before sampling memory. */
export async function benchStartupMemory(dir: string, idleSec: number): Promise<MemoryRow[]> {
  const root = packageRoot() ?? process.cwd();
  const deviceId = 'gw-bench-1';
  const pki = await createPki({ dir: join(dir, 'pki'), deviceId });
  mkdirSync(join(dir, 'broker'), { recursive: true });
  const broker = await startMosquitto({ dir: join(dir, 'broker'), caFile: pki.ca.cert, certFile: pki.server.cert, keyFile: pki.server.key });
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify({ deviceId, paths: { stateDir: join(dir, 'state'), runDir: join(dir, 'run') }, broker: { url: broker.url, caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key } }));
  const receiver = await startNotifyReceiver(join(dir, 'notify.sock'));
  const children: ResultPromise[] = [];
  try {
    const outpostCmd = ['node', join(root, 'dist', 'runtime', 'cli', 'outpost.js'), 'run'];
    const started = performance.now();
    const outpost = execa(outpostCmd[0] ?? 'node', outpostCmd.slice(1), { env: { OUTPOST_CONFIG: configPath, NOTIFY_SOCKET: receiver.address, NODE_OPTIONS: daemonNodeOptions }, reject: false, stdout: 'ignore' });
    children.push(outpost);
    while (!(await receiver.next(30_000)).data.includes('READY=1'));
    const readyMs = performance.now() - started;

    const bare = execa('node', ['-e', 'setInterval(()=>{},1e3)'], { reject: false });
    children.push(bare);
    const subjects: { subject: string; command: string; pid: number | undefined; readyMs: number | null }[] = [
      { subject: 'outpost run (connected, mTLS)', command: `NODE_OPTIONS='${daemonNodeOptions}' ${outpostCmd.join(' ')}`, pid: outpost.pid, readyMs },
      { subject: 'bare node', command: "node -e 'setInterval(()=>{},1e3)'", pid: bare.pid, readyMs: null },
    ];
    if (await menderAvailable()) {
      const menderConf = join(dir, 'mender.conf');
      mkdirSync(join(dir, 'mender-data'), { recursive: true });
      // An unreachable server is the honest idle case for a gateway between update checks.
      writeFileSync(menderConf, JSON.stringify({ ServerURL: 'https://127.0.0.1:9', UpdatePollIntervalSeconds: 1800, InventoryPollIntervalSeconds: 28800, RetryPollIntervalSeconds: 300 }));
      const mender = execa('mender', ['--config', menderConf, '--fallback-config', menderConf, '--data', join(dir, 'mender-data'), 'daemon'], { reject: false, stdout: 'ignore', stderr: 'ignore' });
      children.push(mender);
      subjects.push({ subject: 'mender daemon (Debian mender-client 3.4)', command: 'mender daemon', pid: mender.pid, readyMs: null });
    }
    await new Promise((resolve) => setTimeout(resolve, idleSec * 1000));
    return subjects.map((s) => ({ subject: s.subject, command: s.command, readyMs: s.readyMs === null ? null : Math.round(s.readyMs), idle: s.pid === undefined ? { rssAnonKiB: 0, rssKiB: 0 } : procMemory(s.pid) }));
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await Promise.allSettled(children);
    await receiver.close();
    await broker.stop();
  }
}
