/**
 * The device-side OSTree adapter: the `ostree` CLI through the Exec port (no libostree bindings),
 * parameterised by sysroot, repo and OS name so tests and the demo drive a temp sysroot.
 *
 * Facts about ostree 2022.7 (Debian 12) this module is built on, checked against a real sysroot:
 * - `ostree admin status` has no `--json`; it is parsed in ostree-status.ts.
 * - `ostree fsck` takes no commit argument (a positional one is silently ignored) and checks every
 *   commit in the repo; `verifyCommit` therefore adds per-commit checks of its own before it.
 * - `ostree admin set-default` only exists from 2023.6; `rollback` uses undeploy, or a fresh
 *   deployment of the rollback commit when the deployments ahead of it include the booted one
 *   (ostree refuses to undeploy the booted deployment).
 * - A commit with no ref is pruned by `ostree admin deploy` and `cleanup`: a commit applied from a
 *   delta must be protected with `refUpdate` until it is deployed (deployments hold their own refs).
 * - `static-delta apply-offline` and HTTP pulls verify object checksums as they write them.
 *
 * Every ostree failure surfaces as `OSTREE_FAILED` naming the operation; the Exec error (command,
 * exit code, stderr tail) is kept in the message and as `cause`.
 */
import { createHash } from 'node:crypto';
import { access, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { Exec, ExecOptions } from '../platform/index.js';
import type { BootVersion } from './boot/index.js';
import { flushBoot, type FlushHost, type FlushResult } from './flush-boot.js';
import { parseAdminStatus, type Deployment, type DeploymentRef } from './ostree-status.js';

/** Where the adapter works and with what. */
export interface OstreeOptions {
  exec: Exec;
  log: Logger;
  /** Root of the OSTree sysroot: `/` on a device, a temp dir in tests. */
  sysroot: string;
  /** The system repo; default `<sysroot>/ostree/repo`. */
  repo?: string;
  /** The stateroot (`ostree admin os-init` name) outpost manages. */
  osname: string;
  /** Names the deployment to treat as booted when ostree sees none (the simulated boot adapter). */
  bootedHint?: () => Promise<DeploymentRef | null>;
  /** Time limit for the long operations (apply, pull, fsck, deploy); default Exec's 10 min. */
  timeoutMs?: number;
  /** Host facts for the /boot flush; tests inject them. */
  flushHost?: FlushHost;
}

/** Options of a deployment. */
export interface DeployOptions {
  /** Kernel arguments set on top of the merged ones (`--karg=NAME=VALUE`). */
  kargs?: string[];
}

/** The OSTree operations the update state machine needs. */
export interface Ostree {
  readonly sysroot: string;
  readonly repo: string;
  readonly osname: string;
  /** All deployments in boot order, roles marked relative to the current one. */
  deployments(): Promise<Deployment[]>;
  /** The current deployment's commit: booted, else hinted, else the default one; null if none. */
  bootedCommit(): Promise<string | null>;
  /** Whether the repo holds the complete commit object (not a partial pull). */
  hasCommit(commit: string): Promise<boolean>;
  /** Checks the commit is present, complete and self-consistent; with `fsck`, also that every object in the repo hashes right. */
  verifyCommit(commit: string, options?: { fsck?: boolean }): Promise<void>;
  /**
   * Applies a static delta file into the repo. `expectFrom`: the source commit the signed metadata
   * names, checked first (ostree's own error for a missing source is often an obscure opcode
   * failure). `expectCommit`: the target, checked to be present afterwards.
   */
  applyStaticDelta(file: string, options?: { expectFrom?: string; expectCommit?: string }): Promise<void>;
  /** Pulls a ref or commit from an HTTP archive repo (the fallback path); resolves to the commit. */
  pull(remoteUrl: string, refOrCommit: string, options?: { remote?: string }): Promise<string>;
  /** Deploys `commit` as the new default and flushes /boot; resolves to the new deployment. */
  deploy(commit: string, options?: DeployOptions): Promise<Deployment>;
  /** Removes deployment `index` (refused for the booted one) and flushes /boot. */
  undeploy(index: number): Promise<void>;
  /** Makes the rollback deployment the default for the next boot; resolves to the new default. */
  rollback(): Promise<Deployment>;
  /** Undeploys every deployment of this OS ordered before the current one; resolves to how many. */
  cancelPending(): Promise<number>;
  /** `ostree admin cleanup`: removes old boot dirs and prunes unreferenced objects. */
  cleanup(): Promise<void>;
  /**
   * Points `ref` at `commit`, e.g. to keep a staged commit from being pruned. `null` deletes it —
   * and, as `ostree refs --delete` takes a prefix, every ref below it (`outpost` removes `outpost/staged`).
   */
  refUpdate(ref: string, commit: string | null): Promise<void>;
  /** Flushes `<sysroot>/boot` (see flush-boot.ts). */
  flushBoot(): Promise<FlushResult>;
  /** Which boot config is active: `<sysroot>/boot/loader` points at `loader.0` or `loader.1`. */
  bootVersion(): Promise<BootVersion>;
}

const checksumPattern = /^[0-9a-f]{64}$/;

/** Whether `s` is a full OSTree commit checksum. */
export function isCommitChecksum(s: string): boolean {
  return checksumPattern.test(s);
}

function requireChecksum(commit: string): void {
  if (!isCommitChecksum(commit)) {
    throw new OutpostError('OSTREE_FAILED', `not an OSTree commit checksum (64 hex digits): ${JSON.stringify(commit)}`);
  }
}

/** Creates the adapter; nothing runs until a method is called. */
export function createOstree(options: OstreeOptions): Ostree {
  const { exec, log, sysroot, osname } = options;
  const repo = options.repo ?? join(sysroot, 'ostree', 'repo');
  // Stable, untranslated tool output for parsing.
  const env = { LC_ALL: 'C' };
  const long: ExecOptions = { env, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) };
  const admin = (sub: string, args: string[]): string[] => ['admin', sub, `--sysroot=${sysroot}`, ...args];

  const run = async (what: string, args: string[], opts: ExecOptions = { env }): Promise<string> => {
    try {
      return (await exec.run('ostree', args, opts)).stdout;
    } catch (err) {
      const transient = err instanceof OutpostError ? err.transient : false;
      const detail = err instanceof Error ? err.message : String(err);
      throw new OutpostError('OSTREE_FAILED', `${what} failed: ${detail}`, { cause: err, transient });
    }
  };

  const objectPath = (commit: string): string => join(repo, 'objects', commit.slice(0, 2), `${commit.slice(2)}.commit`);
  const partialPath = (commit: string): string => join(repo, 'state', `${commit}.commitpartial`);
  const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

  const deployments = async (): Promise<Deployment[]> => {
    const text = await run('listing deployments (ostree admin status)', admin('status', []));
    return parseAdminStatus(text, osname, options.bootedHint ? await options.bootedHint() : null);
  };
  const ours = async (): Promise<Deployment[]> => (await deployments()).filter((d) => d.osname === osname);
  const flush = (): Promise<FlushResult> => flushBoot(exec, log, join(sysroot, 'boot'), options.flushHost);

  const hasCommit = async (commit: string): Promise<boolean> => {
    requireChecksum(commit);
    // The object file and ostree's partial-commit marker are the repo's own definition of "have it".
    return (await exists(objectPath(commit))) && !(await exists(partialPath(commit)));
  };

  const undeployIndex = async (index: number): Promise<void> => {
    await run(`undeploying deployment ${index}`, admin('undeploy', [String(index)]), long);
  };

  const adapter: Ostree = {
    sysroot,
    repo,
    osname,
    deployments,

    async bootedCommit() {
      return (await ours()).find((d) => d.current)?.commit ?? null;
    },

    hasCommit,

    async verifyCommit(commit, verify = {}) {
      requireChecksum(commit);
      if (!(await exists(objectPath(commit)))) throw new OutpostError('OSTREE_FAILED', `commit ${commit} is not in ${repo}`);
      if (await exists(partialPath(commit))) {
        throw new OutpostError('OSTREE_FAILED', `commit ${commit} in ${repo} is partial (an interrupted pull or apply)`);
      }
      // A commit object's checksum is the sha256 of its bytes: re-hash it, scoped to this commit.
      const actual = createHash('sha256').update(await readFile(objectPath(commit))).digest('hex');
      if (actual !== commit) throw new OutpostError('OSTREE_FAILED', `commit object ${commit} is corrupt (hashes to ${actual})`);
      await run(`loading commit ${commit} (ostree show)`, ['show', `--repo=${repo}`, commit]);
      // Walks every dirtree/dirmeta of this commit: a missing metadata object fails here.
      await run(`walking the tree of ${commit} (ostree ls -R)`, ['ls', `--repo=${repo}`, '-R', commit], { ...long, stdout: 'discard' });
      if (verify.fsck !== true) return;
      const started = performance.now();
      // Whole-repo: 2022.7's fsck cannot be scoped to one commit. A device repo holds only a few.
      await run(`checking ${repo} (ostree fsck)`, ['fsck', `--repo=${repo}`, '--quiet'], long);
      log.info('fsck passed', { repo, commit, ms: Math.round(performance.now() - started) });
    },

    async applyStaticDelta(file, apply = {}) {
      if (apply.expectFrom !== undefined && !(await hasCommit(apply.expectFrom))) {
        throw new OutpostError('OSTREE_FAILED', `static delta ${file} starts from ${apply.expectFrom}, which is not in ${repo}: fetch a full commit instead`);
      }
      const started = performance.now();
      await run(`applying static delta ${file}`, ['static-delta', 'apply-offline', `--repo=${repo}`, file], long);
      if (apply.expectCommit !== undefined && !(await hasCommit(apply.expectCommit))) {
        throw new OutpostError('OSTREE_FAILED', `static delta ${file} applied but commit ${apply.expectCommit} is not in ${repo}: wrong delta for this release`);
      }
      log.info('static delta applied', { file, ms: Math.round(performance.now() - started) });
    },

    async pull(remoteUrl, refOrCommit, pull = {}) {
      const remote = pull.remote ?? 'outpost';
      // Signatures are TUF's job (the commit checksum comes from signed targets), not GPG's.
      await run(`configuring remote ${remote} = ${remoteUrl}`, [
        'remote', 'add', `--repo=${repo}`, '--force', '--no-gpg-verify', '--set=gpg-verify-summary=false', remote, remoteUrl,
      ]);
      const started = performance.now();
      // ostree trusts a local (file://) source and skips re-hashing its objects unless told not
      // to: a bundle's repository is as untrusted as the network. `--` keeps a ref from being
      // read as an option.
      const untrusted = remoteUrl.startsWith('file:') ? ['--untrusted'] : [];
      await run(`pulling ${refOrCommit} from ${remoteUrl}`, ['pull', `--repo=${repo}`, ...untrusted, '--', remote, refOrCommit], long);
      const commit = isCommitChecksum(refOrCommit)
        ? refOrCommit
        : (await run(`resolving ${remote}:${refOrCommit}`, ['rev-parse', `--repo=${repo}`, `${remote}:${refOrCommit}`])).trim();
      if (!(await hasCommit(commit))) throw new OutpostError('OSTREE_FAILED', `pull of ${refOrCommit} finished without commit ${commit}`);
      log.info('pulled', { remoteUrl, refOrCommit, commit, ms: Math.round(performance.now() - started) });
      return commit;
    },

    async deploy(commit, deploy = {}) {
      if (!(await hasCommit(commit))) throw new OutpostError('OSTREE_FAILED', `cannot deploy ${commit}: not (completely) in ${repo}`);
      const kargs = (deploy.kargs ?? []).map((k) => `--karg=${k}`);
      const started = performance.now();
      await run(`deploying ${commit}`, admin('deploy', [`--os=${osname}`, ...kargs, commit]), long);
      const flushed = await flush();
      const first = (await deployments())[0];
      if (first === undefined || first.commit !== commit) {
        throw new OutpostError('OSTREE_FAILED', `ostree admin deploy returned but ${commit} is not the default deployment`);
      }
      log.info('deployed', { commit, serial: first.serial, ms: Math.round(performance.now() - started), bootFrozen: flushed.frozen });
      return first;
    },

    async undeploy(index) {
      const target = (await deployments()).find((d) => d.index === index);
      if (target === undefined) throw new OutpostError('OSTREE_FAILED', `no deployment with index ${index}`);
      if (target.booted) throw new OutpostError('OSTREE_FAILED', `deployment ${index} (${target.commit}) is booted and cannot be undeployed`);
      await undeployIndex(index);
      await flush();
    },

    async rollback() {
      const list = await ours();
      const target = list.find((d) => d.rollback);
      if (target === undefined) throw new OutpostError('OSTREE_FAILED', `no rollback deployment of ${osname} to return to`);
      const ahead = list.filter((d) => d.index < target.index);
      if (ahead.some((d) => d.booted)) {
        // The booted deployment cannot be undeployed and 2022.7 cannot reorder: deploy the
        // rollback commit again as the new default, keeping everything else for now.
        log.warn('rollback by redeploying the previous commit', { commit: target.commit });
        await run(`redeploying ${target.commit} for rollback`, admin('deploy', [`--os=${osname}`, '--retain', target.commit]), long);
      } else {
        // Highest index first, so the lower indices stay valid while we go.
        for (const d of [...ahead].sort((a, b) => b.index - a.index)) await undeployIndex(d.index);
      }
      await flush();
      const first = (await deployments())[0];
      if (first === undefined || first.commit !== target.commit) {
        throw new OutpostError('OSTREE_FAILED', `rollback finished but ${target.commit} is not the default deployment`);
      }
      log.info('rolled back', { commit: target.commit, removed: ahead.length });
      return first;
    },

    async cancelPending() {
      const list = await ours();
      const current = list.find((d) => d.current);
      if (current === undefined) return 0;
      const ahead = list.filter((d) => d.index < current.index && !d.booted).sort((a, b) => b.index - a.index);
      for (const d of ahead) await undeployIndex(d.index);
      if (ahead.length > 0) await flush();
      return ahead.length;
    },

    async cleanup() {
      await run('cleaning up (ostree admin cleanup)', admin('cleanup', []), long);
    },

    async refUpdate(ref, commit) {
      if (commit === null) {
        await run(`deleting ref ${ref}`, ['refs', `--repo=${repo}`, '--delete', ref]);
        return;
      }
      requireChecksum(commit);
      await run(`setting ref ${ref} to ${commit}`, ['refs', `--repo=${repo}`, '--force', `--create=${ref}`, commit]);
    },

    flushBoot: flush,

    async bootVersion() {
      const link = join(sysroot, 'boot', 'loader');
      const target = await readlink(link).catch((err: unknown) => {
        throw new OutpostError('OSTREE_FAILED', `cannot read the boot config link ${link}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      });
      if (target === 'loader.0') return 0;
      if (target === 'loader.1') return 1;
      throw new OutpostError('OSTREE_FAILED', `${link} points at ${JSON.stringify(target)}, expected loader.0 or loader.1`);
    },
  };
  return adapter;
}
