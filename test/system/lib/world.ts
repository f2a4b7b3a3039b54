/**
 * The host side of a system test, all on loopback inside the test's network namespace: an HTTP
 * server for the TUF repository (per-test copy of the image's template, releases signed with the
 * real `outpostctl`) and the OSTree build repo (full-pull fallback), and mosquitto with mTLS.
 */
import { cp, mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import mqtt from 'mqtt';
import { readFileSync } from 'node:fs';
import { startFileServer, type FileServer } from '../../../scripts/world/file-server.js';
import { startMosquitto, type Mosquitto } from '../../../scripts/world/mosquitto.js';
import { guest, repoRoot, type BuiltImage } from './image.js';
import { parseCommandResult, type CommandResult } from '../../../runtime/protocol/index.js';
import { readPrivateKeyFile, type PrivateKey } from '../../../runtime/trust/index.js';

/** The command types the scenarios send (handlers in runtime/commands/handlers/). */
export type RigCommandType = 'reboot' | 'diagnostics' | 'grant-access' | 'revoke-access';

/** A test's services. */
export interface SystemWorld {
  readonly server: FileServer;
  readonly broker: Mosquitto;
  readonly tufDir: string;
  /** Signs release `version` (an image commit) with a static delta from each of `deltaFrom`. */
  release(version: number, deltaFrom: number[]): Promise<string>;
  /** Writes an offline bundle of release `version` to `outFile`. */
  bundle(version: number, outFile: string): Promise<void>;
  /** Lets a new commands key send `types` (a target in the signed metadata); the device learns it at its next check. */
  addCommandIssuer(types: RigCommandType[]): Promise<PrivateKey>;
  /**
   * Publishes a signed command envelope to the device (QoS 1, as the fleet's observer identity)
   * and resolves to its result, waiting through reboots up to `timeoutMs`; null when none came.
   */
  command(envelope: string, timeoutMs: number): Promise<CommandResult | null>;
  /** The device's retained state document, read as a second mTLS client. */
  retainedState(timeoutMs?: number): Promise<Record<string, unknown> | null>;
  close(): Promise<void>;
}

/** Runs the compiled outpostctl; rejects with its stderr. */
export async function outpostctl(args: string[]): Promise<string> {
  const r = await execa('node', [join(repoRoot, 'dist', 'runtime', 'cli', 'outpostctl.js'), ...args], { reject: false });
  if (r.exitCode !== 0) throw new Error(`outpostctl ${args.slice(0, 2).join(' ')} failed (${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

/** Target name outpostctl gives release `version` of the image's hardware class. */
export function targetName(version: number): string {
  return `releases/${guest.hardware}/x86_64/${version}`;
}

/** Starts the services for one test in `dir`. */
export async function createWorld(image: BuiltImage, dir: string): Promise<SystemWorld> {
  const www = join(dir, 'www');
  const tufDir = join(www, 'tuf');
  await mkdir(www, { recursive: true });
  await cp(image.tufTemplate, tufDir, { recursive: true });
  await symlink(image.repo, join(www, 'ostree'));
  const server = await startFileServer({ root: www });
  const pki = image.pkiDir;
  await mkdir(join(dir, 'broker'), { recursive: true });
  const broker = await startMosquitto({
    dir: join(dir, 'broker'),
    caFile: join(pki, 'ca.crt'),
    certFile: join(pki, 'server-guest.crt'),
    keyFile: join(pki, 'server-guest.key'),
  });
  const key = (role: string) => join(image.keysDir, `${role}.key`);
  /** MQTT 5 options of the fleet's observer identity (a second mTLS client beside the device). */
  const observer = (clientId: string) => ({
    ca: readFileSync(join(pki, 'ca.crt')),
    cert: readFileSync(join(pki, 'observer.crt')),
    key: readFileSync(join(pki, 'observer.key')),
    clientId,
    protocolVersion: 5 as const,
  });
  const commit = (v: number): string => {
    const c = image.commits.get(v);
    if (c === undefined) throw new Error(`image has no release ${v}`);
    return c;
  };
  return {
    server,
    broker,
    tufDir,
    release: (version, deltaFrom) =>
      outpostctl([
        'release', 'add', '--repo', tufDir, '--ostree-repo', image.repo, '--ref', commit(version), '--hardware', guest.hardware,
        '--arch', 'x86_64', '--version', String(version), ...deltaFrom.flatMap((v) => ['--delta-from', commit(v)]),
        '--targets-key', key('targets'), '--snapshot-key', key('snapshot'), '--timestamp-key', key('timestamp'),
      ]),
    bundle: async (version, outFile) => {
      await outpostctl(['release', 'bundle', '--repo', tufDir, '--target', targetName(version), '--out', outFile]);
    },
    addCommandIssuer: async (types) => {
      const dirOfKeys = join(dir, 'command-keys');
      await outpostctl(['keys', 'generate', '--role', 'commands', '--name', 'operator', '--out', dirOfKeys]);
      await outpostctl([
        'commands', 'issuers', 'add', '--repo', tufDir, '--key', join(dirOfKeys, 'operator.pub'), ...types.flatMap((type) => ['--type', type]), '--max-validity', '1h',
        '--targets-key', key('targets'), '--snapshot-key', key('snapshot'), '--timestamp-key', key('timestamp'),
      ]);
      return readPrivateKeyFile(join(dirOfKeys, 'operator.key'));
    },
    command: async (envelope, timeoutMs) => {
      const { id } = (JSON.parse(envelope) as { signed: { id: string } }).signed;
      const client = await mqtt.connectAsync(broker.url, { ...observer(`rig-commander-${process.pid}`), reconnectPeriod: 1000 });
      try {
        const result = new Promise<CommandResult | null>((resolve) => {
          const timer = setTimeout(() => resolve(null), timeoutMs);
          client.on('message', (_topic, payload) => {
            const parsed = parseCommandResult(payload);
            if (parsed.id !== id) return;
            clearTimeout(timer);
            resolve(parsed);
          });
        });
        await client.subscribeAsync(`outpost/v1/${guest.deviceId}/cmd/result`, { qos: 1 });
        await client.publishAsync(`outpost/v1/${guest.deviceId}/cmd`, envelope, { qos: 1 });
        return await result;
      } finally {
        await client.endAsync(true);
      }
    },
    retainedState: (timeoutMs = 5000) =>
      new Promise((resolve) => {
        const client = mqtt.connect(broker.url, { ...observer(`rig-observer-${process.pid}`), reconnectPeriod: 0 });
        const done = (v: Record<string, unknown> | null) => {
          clearTimeout(timer);
          client.end(true);
          resolve(v);
        };
        const timer = setTimeout(() => done(null), timeoutMs);
        client.on('connect', () => client.subscribe(`outpost/v1/${guest.deviceId}/state`));
        client.on('message', (_t, payload) => {
          try {
            done(JSON.parse(payload.toString()) as Record<string, unknown>);
          } catch {
            done(null);
          }
        });
        client.on('error', () => done(null));
      }),
    close: async () => {
      await broker.stop();
      await server.close();
    },
  };
}
