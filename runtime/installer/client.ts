/**
 * The agent's side of the installer: the update path's `UpdateHost` port over the installer's
 * socket. Each call is one connection and one typed request (protocol.ts); the answer is checked
 * against the op's result schema. The installer not answering (not running, killed mid-request,
 * restarting) is INSTALLER_UNAVAILABLE, a transient error: the update step that asked keeps its
 * state and runs again, as after any transient failure (each step is idempotent).
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import type { AccessHost } from '../access/host.js';
import { OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { Exec } from '../platform/index.js';
import { pullForInstaller } from '../update/agent-pull.js';
import type { BootBackend, BootBackendKind, Deployment, Ostree, UpdateHost } from '../update/index.js';
import { installerAnswerSchema, installerResultSchemas, maxLineBytes, opKinds, type InstallerRequest, type InstallerResult } from './protocol.js';

/** Where the installer listens and what the agent's config says about the system it runs. */
export interface RemoteHostOptions {
  socket: string;
  bootKind: BootBackendKind;
  sysroot: string;
  osname: string;
  /** The simulated backend's reboot happens in the agent: its harness restarts the agent. */
  onSimulatedReboot: (reason: string) => void;
  /** For the full pull, which the agent fetches itself (the installer has no network). */
  stateDir: string;
  exec: Exec;
  log: Logger;
}

const longTimeoutMs = 15 * 60_000;
const shortTimeoutMs = 60_000;

/** Sends one request and returns its checked result. */
export async function installerCall<R extends InstallerRequest>(socket: string, request: R): Promise<InstallerResult<R['op']>> {
  const timeoutMs = opKinds[request.op] === 'long' ? longTimeoutMs : shortTimeoutMs;
  const line = await new Promise<string>((resolve, reject) => {
    const unavailable = (why: string) => reject(new OutpostError('INSTALLER_UNAVAILABLE', `the installer at ${socket} did not answer ${request.op}: ${why}`, { transient: true }));
    const conn = connect({ path: socket });
    let buffered = '';
    conn.setEncoding('utf8');
    conn.setTimeout(timeoutMs, () => {
      conn.destroy();
      unavailable(`no answer within ${timeoutMs / 1000} s`);
    });
    conn.on('connect', () => conn.write(`${JSON.stringify(request)}\n`));
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > maxLineBytes) conn.destroy(new Error(`answer longer than ${maxLineBytes} bytes`));
    });
    conn.on('error', (err) => unavailable(err.message));
    conn.on('close', () => {
      const end = buffered.indexOf('\n');
      if (end < 0) unavailable('the connection closed without an answer');
      else resolve(buffered.slice(0, end));
    });
  });
  let answer;
  try {
    answer = installerAnswerSchema.parse(JSON.parse(line));
  } catch (err) {
    throw new OutpostError('INTERNAL', `the installer's answer to ${request.op} is malformed: ${(err as Error).message}`, { cause: err });
  }
  if (!answer.ok) throw new OutpostError(answer.error.code, answer.error.message, { transient: answer.error.transient });
  const result = installerResultSchemas[request.op].safeParse(answer.result);
  if (!result.success) throw new OutpostError('INTERNAL', `the installer's result for ${request.op} is malformed: ${result.error.issues[0]?.message ?? ''}`);
  return result.data as InstallerResult<R['op']>;
}

/** The `UpdateHost` port through the installer. */
export function remoteHost(options: RemoteHostOptions): UpdateHost {
  const call = <R extends InstallerRequest>(request: R) => installerCall(options.socket, request);
  const none = async (request: InstallerRequest): Promise<void> => void (await call(request));
  const ostree: Ostree = {
    sysroot: options.sysroot,
    repo: join(options.sysroot, 'ostree', 'repo'),
    osname: options.osname,
    deployments: async (): Promise<Deployment[]> => call({ op: 'deployments' }),
    bootedCommit: () => call({ op: 'bootedCommit' }),
    hasCommit: (commit) => call({ op: 'hasCommit', commit }),
    verifyCommit: (commit, o) => none({ op: 'verifyCommit', commit, fsck: o?.fsck ?? false }),
    applyStaticDelta: (file, o) => none({ op: 'applyStaticDelta', file, ...(o?.expectFrom ? { expectFrom: o.expectFrom } : {}), ...(o?.expectCommit ? { expectCommit: o.expectCommit } : {}) }),
    // A bundle's repository is already local; a network repository is fetched by the agent first.
    pull: async (url, commit) => call({ op: 'pull', url: url.startsWith('file:') ? url : await pullForInstaller(options, url, commit), refOrCommit: commit }),
    deploy: (commit) => call({ op: 'deploy', commit }),
    undeploy: (index) => none({ op: 'undeploy', index }),
    rollback: () => call({ op: 'rollback' }),
    cancelPending: () => call({ op: 'cancelPending' }),
    cleanup: () => none({ op: 'cleanup' }),
    refUpdate: (ref, commit) => none({ op: 'refUpdate', ref, commit }),
    flushBoot: () => call({ op: 'flushBoot' }),
    bootVersion: () => call({ op: 'bootVersion' }),
  };
  const boot: BootBackend = {
    kind: options.bootKind,
    atStart: () => none({ op: 'boot.atStart' }),
    bootId: () => call({ op: 'boot.id' }),
    markTrial: (target) => none({ op: 'boot.markTrial', commit: target.commit, bootVersion: target.bootVersion }),
    markGood: () => none({ op: 'boot.markGood' }),
    trialState: () => call({ op: 'boot.trialState' }),
    resetCause: () => call({ op: 'boot.resetCause' }),
    bootedCommit: () => call({ op: 'boot.bootedCommit' }),
    reboot: async (reason) => {
      await none({ op: 'boot.reboot', reason });
      if (options.bootKind === 'simulated') options.onSimulatedReboot(reason);
    },
  };
  return { ostree, boot };
}

/**
 * The just-in-time access port through the installer (root writes sshd's key files and ends
 * sessions); the agent's `AccessService` uses it when `installer.socket` is set.
 */
export function remoteAccessHost(socket: string): AccessHost {
  return {
    set: (entries) => installerCall(socket, { op: 'access.set', entries: entries.map((e) => ({ ...e })) }),
    endSessions: (principal) => installerCall(socket, { op: 'access.endSessions', principal }),
    sessions: () => installerCall(socket, { op: 'access.sessions' }),
  };
}
