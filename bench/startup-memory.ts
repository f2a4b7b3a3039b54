/**
 * Startup and idle memory: time from spawn to READY=1 for `outpost run` connected to a real
 * mosquitto over mTLS, and RssAnon/Rss after an idle period, side by side in the same run with a
 * bare node process and (when installed) `mender daemon`, the Debian-packaged Mender client.
 * outpost runs four ways: the link alone; with the `update` section (an OTA world's TUF
 * repository and sysroot, simulated boot; its first check runs 5 s after start); with every
 * service on in one process: `update` plus `commands` (issuers published by `outpostctl commands
 * issuers add`, trusted at that first check; the outbox and its drain running); and with every
 * service on as the image runs it: the agent split from `outpost installer`, which
 * `systemd-socket-activate` starts on the agent's first request and starts again on a later one
 * after an idle exit (as outpost-installer.socket does), and `commands.access` on too.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
  /** The socket-activated installer's row: whether it was running when sampled, and how often it was started. */
  installer?: { running: boolean; activations: number; idleExitSec: number };
}

/** Node flags the systemd unit sets through NODE_OPTIONS (kept in one place with the unit). */
export const daemonNodeOptions = '--max-semi-space-size=1 --max-old-space-size=64 --jitless';

async function menderAvailable(): Promise<boolean> {
  return (await execa('mender', ['--version'], { reject: false })).exitCode === 0;
}

/**
 * The running installer under the activator loop `loopPid`, if any: systemd-socket-activate execs
 * node in place on a connection, so a child named node is an installer, any other one an
 * activator still waiting for its first request.
 */
function runningInstaller(loopPid: number): number | undefined {
  const children = `/proc/${loopPid}/task/${loopPid}/children`;
  const pids = existsSync(children) ? readFileSync(children, 'utf8').trim().split(/\s+/).filter(Boolean) : [];
  return pids.map(Number).find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node';
    } catch {
      return false;
    }
  });
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
  const groups: number[] = [];
  try {
    const outpostCmd = ['node', join(root, 'dist', 'runtime', 'cli', 'outpost.js'), 'run'];
    const subjects: { subject: string; command: string; pid: () => number | undefined; readyMs: number | null; installer?: { activations: () => number; idleExitSec: number } }[] = [];
    const splitId = 'gw-bench-split';
    const installerSocket = join(dir, splitId, 'installer.sock');
    // The image's default is 60 s; shorter here so the installer has gone within the idle period, as it would on a gateway idle for longer.
    const installerIdleExitSec = Math.max(1, Math.floor(idleSec / 3));
    const variants: { subject: string; id: string; sections: Record<string, unknown> }[] = [
      { subject: 'outpost run (connected, mTLS)', id: deviceId, sections: {} },
      { subject: 'outpost run + update (connected, mTLS, one TUF check)', id: 'gw-bench-update', sections: { update: ota.updateConfig() } },
      { subject: 'outpost run + update + commands (every service on, one process)', id: 'gw-bench-commands', sections: { update: ota.updateConfig(), commands: {} } },
      {
        subject: 'outpost run, every service on as the image runs it (agent split from the installer; update + commands + commands.access)',
        id: splitId,
        sections: {
          update: ota.updateConfig(),
          // The principal need not exist: no grant is made, the service only has to be on.
          commands: { access: { principals: ['outpost-bench'], keysDir: join(dir, splitId, 'keys'), maxDurationSec: 120, tunnels: false } },
          installer: { socket: installerSocket, stateDir: join(dir, splitId, 'installer-state'), idleExitSec: installerIdleExitSec },
        },
      },
    ];
    // One at a time to READY=1, so each start has the machine to itself and its datagram is its own.
    for (const v of variants) {
      const pair = v.id === deviceId ? pki.client : await issueClientCert(pki, v.id);
      const configPath = join(dir, `config-${v.id}.json`);
      writeFileSync(configPath, JSON.stringify({ deviceId: v.id, paths: { stateDir: join(dir, v.id, 'state'), runDir: join(dir, v.id, 'run') }, broker: { url: broker.url, caFile: pki.ca.cert, certFile: pair.cert, keyFile: pair.key }, ...v.sections }));
      let installerSubject: (typeof subjects)[number] | undefined;
      if (v.id === splitId) {
        mkdirSync(join(dir, splitId), { recursive: true });
        // systemd-socket-activate passes on only the environment it is told to (-E), as the unit's Environment= lines do.
        const installerCmd = ['systemd-socket-activate', '-l', installerSocket, '-E', `OUTPOST_CONFIG=${configPath}`, '-E', `NODE_OPTIONS=${daemonNodeOptions}`, 'node', join(root, 'dist', 'runtime', 'cli', 'outpost.js'), 'installer'];
        // systemd keeps the socket and starts the service again on the next request after an idle
        // exit; the loop does that. Its own process group, so the installer it started is killed with it.
        const loop = execa('sh', ['-c', 'while "$@"; do :; done', 'sh', ...installerCmd], { reject: false, stdout: 'ignore', buffer: false, detached: true });
        const loopPid = loop.pid;
        if (loopPid === undefined) throw new Error('cannot start the installer activator');
        children.push(loop);
        groups.push(loopPid);
        let activatorLog = '';
        loop.stderr?.on('data', (chunk: Buffer) => (activatorLog += chunk.toString()));
        while (!existsSync(installerSocket)) await new Promise((resolve) => setTimeout(resolve, 50));
        installerSubject = {
          subject: `outpost installer beside that agent (socket-activated, idleExitSec ${installerIdleExitSec})`,
          command: `${installerCmd.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}, started again after each exit`,
          pid: () => runningInstaller(loopPid),
          readyMs: null,
          installer: { activations: () => activatorLog.match(/^Execing /gm)?.length ?? 0, idleExitSec: installerIdleExitSec },
        };
      }
      const started = performance.now();
      const outpost = execa(outpostCmd[0] ?? 'node', outpostCmd.slice(1), { env: { OUTPOST_CONFIG: configPath, NOTIFY_SOCKET: receiver.address, NODE_OPTIONS: daemonNodeOptions }, reject: false, stdout: 'ignore' });
      children.push(outpost);
      for (;;) {
        const datagram = await receiver.next(30_000);
        if (datagram.data.includes('READY=1') && (datagram.pid === null || datagram.pid === outpost.pid)) break;
      }
      subjects.push({ subject: v.subject, command: `NODE_OPTIONS='${daemonNodeOptions}' ${outpostCmd.join(' ')}`, pid: () => outpost.pid, readyMs: performance.now() - started });
      if (installerSubject) subjects.push(installerSubject);
    }

    const bare = execa('node', ['-e', 'setInterval(()=>{},1e3)'], { reject: false });
    children.push(bare);
    subjects.push({ subject: 'bare node', command: "node -e 'setInterval(()=>{},1e3)'", pid: () => bare.pid, readyMs: null });
    if (await menderAvailable()) {
      const menderConf = join(dir, 'mender.conf');
      mkdirSync(join(dir, 'mender-data'), { recursive: true });
      // An unreachable server is the honest idle case for a gateway between update checks.
      writeFileSync(menderConf, JSON.stringify({ ServerURL: 'https://127.0.0.1:9', UpdatePollIntervalSeconds: 1800, InventoryPollIntervalSeconds: 28800, RetryPollIntervalSeconds: 300 }));
      const mender = execa('mender', ['--config', menderConf, '--fallback-config', menderConf, '--data', join(dir, 'mender-data'), 'daemon'], { reject: false, stdout: 'ignore', stderr: 'ignore' });
      children.push(mender);
      subjects.push({ subject: 'mender daemon (Debian mender-client 3.4)', command: 'mender daemon', pid: () => mender.pid, readyMs: null });
    }
    await new Promise((resolve) => setTimeout(resolve, idleSec * 1000));
    return subjects.map((s) => {
      const pid = s.pid();
      return {
        subject: s.subject,
        command: s.command,
        readyMs: s.readyMs === null ? null : Math.round(s.readyMs),
        idle: pid === undefined ? { rssAnonKiB: 0, rssKiB: 0 } : procMemory(pid),
        ...(s.installer ? { installer: { running: pid !== undefined, activations: s.installer.activations(), idleExitSec: s.installer.idleExitSec } } : {}),
      };
    });
  } finally {
    for (const group of groups) {
      try {
        process.kill(-group, 'SIGKILL');
      } catch {
        // ESRCH: the loop ended on its own (an installer that failed), and nothing of it is left.
      }
    }
    for (const child of children) child.kill('SIGKILL');
    await Promise.allSettled(children);
    await receiver.close();
    await broker.stop();
    await ota.close();
  }
}
