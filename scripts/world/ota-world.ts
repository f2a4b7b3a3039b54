/**
 * The release side of an OTA world for tests and the demo: an OSTree world (build repo, HTTP
 * server, device sysroot with v1) plus signing keys and a TUF repository made with the real
 * `outpostctl`, served beside the OSTree repo at `<server>/tuf/`.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { UpdateConfig } from '../../runtime/config/index.js';
import { packageRoot } from '../../runtime/version.js';
import { createOstreeWorld, type ExtraFiles, type OstreeWorld, type OstreeWorldOptions } from './ostree-world.js';

/** Hardware class of the world's device. */
export const worldHardware = 'gw-demo';

/** A running OTA world. */
export interface OtaWorld {
  readonly ostree: OstreeWorld;
  readonly tufDir: string;
  readonly keysDir: string;
  /** The initial trusted root to ship on the device. */
  readonly rootFile: string;
  /** Runs the compiled `outpostctl` with these arguments; rejects with its stderr on failure. */
  ctl(args: string[]): Promise<string>;
  /** Commits `version` (with `extra` files) and releases it with deltas from `deltaFrom` versions. */
  release(version: number, options?: { extra?: ExtraFiles; deltaFrom?: number[]; hardware?: string; arch?: string }): Promise<string>;
  /** An `update` config section for a device of this world (simulated boot). */
  updateConfig(overrides?: Partial<Record<keyof UpdateConfig, unknown>>): Record<string, unknown>;
  close(): Promise<void>;
}

/** Builds the world: keys for every role, `repo init`, nothing released yet. */
export async function createOtaWorld(options: OstreeWorldOptions = {}): Promise<OtaWorld> {
  const ostree = await createOstreeWorld({ versions: [1], ...options });
  const root = packageRoot() ?? process.cwd();
  const ctlPath = join(root, 'dist', 'runtime', 'cli', 'outpostctl.js');
  const ctl = async (args: string[]): Promise<string> => {
    const result = await execa('node', [ctlPath, ...args], { reject: false });
    if (result.exitCode !== 0) throw new Error(`outpostctl ${args.slice(0, 2).join(' ')} failed (${result.exitCode}): ${result.stderr}`);
    return result.stdout;
  };
  const keysDir = join(ostree.dir, 'keys');
  const tufDir = join(ostree.www, 'tuf');
  await mkdir(keysDir, { recursive: true });
  for (const role of ['root', 'targets', 'snapshot', 'timestamp']) await ctl(['keys', 'generate', '--role', role, '--out', keysDir]);
  const key = (role: string) => join(keysDir, `${role}.key`);
  await ctl(['repo', 'init', tufDir, '--root-key', key('root'), '--targets-key', key('targets'), '--snapshot-key', key('snapshot'), '--timestamp-key', key('timestamp')]);
  const rootFile = join(ostree.dir, 'device-root.json');
  await copyFile(join(tufDir, '1.root.json'), rootFile);

  return {
    ostree,
    tufDir,
    keysDir,
    rootFile,
    ctl,
    release: async (version, opts = {}) => {
      const commit = ostree.commits.get(version) ?? (await ostree.addVersion(version, opts.extra));
      const deltas = (opts.deltaFrom ?? []).flatMap((from) => ['--delta-from', ostree.commit(from)]);
      return ctl([
        'release', 'add', '--repo', tufDir, '--ostree-repo', ostree.buildRepo, '--ref', commit,
        '--hardware', opts.hardware ?? worldHardware, '--arch', opts.arch ?? 'x86_64', '--version', String(version), ...deltas,
        '--targets-key', key('targets'), '--snapshot-key', key('snapshot'), '--timestamp-key', key('timestamp'),
      ]);
    },
    updateConfig: (overrides = {}) => ({
      server: `${ostree.server.url}/tuf/`,
      ostreeUrl: ostree.repoUrl,
      rootFile,
      hardware: worldHardware,
      arch: 'x86_64',
      sysroot: ostree.sysroot,
      osname: ostree.osname,
      checkIntervalSec: 3600,
      applyHeadroomBytes: 0,
      boot: { backend: 'simulated', trialBoots: 2 },
      probation: { windowSec: 5, intervalSec: 1 },
      ...overrides,
    }),
    close: () => ostree.close(),
  };
}
