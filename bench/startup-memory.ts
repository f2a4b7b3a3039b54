/**
 * Startup and idle memory: time from spawn to READY=1 for `outpost run` connected to a real
 * mosquitto over mTLS, and RssAnon/Rss after an idle period, side by side in the same run with a
 * bare node process and (when installed) `mender daemon`, the Debian-packaged Mender client.
 * outpost runs three ways: the link alone; with the `update` section (an OTA world's TUF
 * repository and sysroot, simulated boot; its first check runs 5 s after start); and with every
 * service on: `update` plus `commands` (issuers published by `outpostctl commands issuers add`,
 * trusted at that first check; the outbox and its drain running).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { createOtaWorld } from '../scripts/world/ota-world.js';
import { createPki, issueClientCert } from '../scripts/world/pki.js';
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
  const ota = await createOtaWorld({ versions: [1] });
  const signing = ['--targets-key', join(ota.keysDir, 'targets.key'), '--snapshot-key', join(ota.keysDir, 'snapshot.key'), '--timestamp-key', join(ota.keysDir, 'timestamp.key')];
  await ota.ctl(['keys', 'generate', '--role', 'commands', '--name', 'operator', '--out', ota.keysDir]);
  await ota.ctl(['commands', 'issuers', 'add', '--repo', ota.tufDir, '--key', join(ota.keysDir, 'operator.pub'), '--type', 'diagnostics', '--max-validity', '1h', ...signing]);
  const receiver = await startNotifyReceiver(join(dir, 'notify.sock'));
  const children: ResultPromise[] = [];
  try {
    const outpostCmd = ['node', join(root, 'dist', 'runtime', 'cli', 'outpost.js'), 'run'];
    const subjects: { subject: string; command: string; pid: number | undefined; readyMs: number | null }[] = [];
    const variants: { subject: string; id: string; sections: Record<string, unknown> }[] = [
      { subject: 'outpost run (connected, mTLS)', id: deviceId, sections: {} },
      { subject: 'outpost run + update (connected, mTLS, one TUF check)', id: 'gw-bench-update', sections: { update: ota.updateConfig() } },
      { subject: 'outpost run + update + commands (every service on)', id: 'gw-bench-commands', sections: { update: ota.updateConfig(), commands: {} } },
    ];
    // One at a time to READY=1, so each start has the machine to itself and its datagram is its own.
    for (const v of variants) {
      const pair = v.id === deviceId ? pki.client : await issueClientCert(pki, v.id);
      const configPath = join(dir, `config-${v.id}.json`);
      writeFileSync(configPath, JSON.stringify({ deviceId: v.id, paths: { stateDir: join(dir, v.id, 'state'), runDir: join(dir, v.id, 'run') }, broker: { url: broker.url, caFile: pki.ca.cert, certFile: pair.cert, keyFile: pair.key }, ...v.sections }));
      const started = performance.now();
      const outpost = execa(outpostCmd[0] ?? 'node', outpostCmd.slice(1), { env: { OUTPOST_CONFIG: configPath, NOTIFY_SOCKET: receiver.address, NODE_OPTIONS: daemonNodeOptions }, reject: false, stdout: 'ignore' });
      children.push(outpost);
      for (;;) {
        const datagram = await receiver.next(30_000);
        if (datagram.data.includes('READY=1') && (datagram.pid === null || datagram.pid === outpost.pid)) break;
      }
      subjects.push({ subject: v.subject, command: `NODE_OPTIONS='${daemonNodeOptions}' ${outpostCmd.join(' ')}`, pid: outpost.pid, readyMs: performance.now() - started });
    }

    const bare = execa('node', ['-e', 'setInterval(()=>{},1e3)'], { reject: false });
    children.push(bare);
    subjects.push({ subject: 'bare node', command: "node -e 'setInterval(()=>{},1e3)'", pid: bare.pid, readyMs: null });
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
    await ota.close();
  }
}
