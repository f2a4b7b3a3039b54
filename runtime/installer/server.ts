/**
 * The installer's request loop: one typed request per connection (protocol.ts), answered by the
 * local OSTree and bootloader adapters, every request and its outcome logged. Requests that change
 * the system run one at a time, in arrival order; queries answer at once. Before a deploy the
 * signed metadata is checked again (deploy-gate.ts). With nothing to do for the idle time the
 * server closes and `onIdle` ends the process: systemd's socket keeps queued connections and
 * starts it again for the next one.
 */
import { realpath } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isOutpostError, OutpostError } from '../errors.js';
import type { Logger } from '../logs/index.js';
import type { UpdateHost } from '../update/index.js';
import type { AccessHost } from '../access/host.js';
import { restartAllowed, type UnitControl } from '../commands/units.js';
import { installerRequestSchema, maxLineBytes, opKinds, type InstallerAnswer, type InstallerRequest } from './protocol.js';

/** What the server needs. */
export interface InstallerServerOptions {
  host: UpdateHost;
  /** Refuses a commit the signed metadata does not name for this device (deploy-gate.ts). */
  requireSigned: (commit: string) => Promise<void>;
  /** The agent's state dir: the only place a delta file or a bundle repository may be read from. */
  agentStateDir: string;
  log: Logger;
  /** Closes after this long without a connection or a request in progress; 0 never. */
  idleExitMs: number;
  onIdle: () => void;
  /**
   * `unit.restart`: the units the installer's own config allows (`commands.restartUnits` and the
   * health checks' restart-unit remediations of the image's config, never the agent's overlay)
   * and how it restarts one. Unset: refused.
   */
  units?: { allowed: readonly string[]; control: UnitControl };
  /** The `access.*` ops (access-gate.ts over access/host.ts's local adapter, with the installer's own config). Unset: refused. */
  access?: AccessHost;
  /** Called after an op was performed, before its answer is sent (the crash tests' fault hook). */
  afterPerform?: (op: InstallerRequest['op']) => void;
}

/** Time a client has to send its request line. */
const requestLineMs = 30_000;

/** `path` after following links must lie in `dir`: a link the agent planted cannot point the installer elsewhere. */
async function requireInside(dir: string, path: string, what: string): Promise<string> {
  const root = await realpath(dir);
  const real = await realpath(path).catch((err: Error) => {
    throw new OutpostError('INSTALLER_REFUSED', `${what} ${path}: ${err.message}`);
  });
  if (!real.startsWith(root + sep)) throw new OutpostError('INSTALLER_REFUSED', `${what} ${path} is outside the agent's state dir ${dir}`);
  return real;
}

function localPath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch {
    throw new OutpostError('INSTALLER_REFUSED', `pull from ${url}: only a repository in the agent's state dir (a file URL); the installer has no network`);
  }
}

/** Runs one request against the host. */
async function perform(options: InstallerServerOptions, request: InstallerRequest): Promise<unknown> {
  const { ostree, boot } = options.host;
  switch (request.op) {
    case 'deployments':
      return ostree.deployments();
    case 'bootedCommit':
      return ostree.bootedCommit();
    case 'hasCommit':
      return ostree.hasCommit(request.commit);
    case 'verifyCommit':
      await ostree.verifyCommit(request.commit, { fsck: request.fsck });
      return null;
    case 'applyStaticDelta': {
      const file = await requireInside(options.agentStateDir, request.file, 'delta file');
      await ostree.applyStaticDelta(file, { ...(request.expectFrom ? { expectFrom: request.expectFrom } : {}), ...(request.expectCommit ? { expectCommit: request.expectCommit } : {}) });
      return null;
    }
    case 'pull': {
      // No network here: the agent fetched a full pull into its own repository (update/agent-pull.ts).
      const url = pathToFileURL(await requireInside(options.agentStateDir, localPath(request.url), 'repository')).href;
      return ostree.pull(url, request.refOrCommit);
    }
    case 'deploy':
      await options.requireSigned(request.commit);
      return ostree.deploy(request.commit);
    case 'undeploy':
      await ostree.undeploy(request.index);
      return null;
    case 'rollback':
      return ostree.rollback();
    case 'cancelPending':
      return ostree.cancelPending();
    case 'cleanup':
      await ostree.cleanup();
      return null;
    case 'refUpdate':
      await ostree.refUpdate(request.ref, request.commit);
      return null;
    case 'flushBoot':
      return ostree.flushBoot();
    case 'bootVersion':
      return ostree.bootVersion();
    case 'boot.atStart':
      await boot.atStart();
      return null;
    case 'boot.id':
      return boot.bootId();
    case 'boot.markTrial':
      await boot.markTrial({ commit: request.commit, bootVersion: request.bootVersion });
      return null;
    case 'boot.markGood':
      await boot.markGood();
      return null;
    case 'boot.trialState':
      return boot.trialState();
    case 'boot.resetCause':
      return boot.resetCause();
    case 'boot.bootedCommit':
      return boot.bootedCommit();
    case 'boot.reboot':
      await boot.reboot(request.reason);
      return null;
    case 'access.set':
    case 'access.endSessions':
    case 'access.sessions': {
      if (!options.access) throw new OutpostError('INSTALLER_REFUSED', `${request.op}: no commands.access section in the installer's config`);
      if (request.op === 'access.set') {
        return options.access.set(request.entries.map((e) => ({ id: e.id, principal: e.principal, publicKey: e.publicKey, expiresAt: e.expiresAt, ...(e.from === undefined ? {} : { from: e.from }), ...(e.proof === undefined ? {} : { proof: e.proof }) })));
      }
      return request.op === 'access.endSessions' ? options.access.endSessions(request.principal) : options.access.sessions();
    }
    case 'unit.restart':
      // The agent checked its list too; this one holds when the agent is not to be trusted.
      if (!options.units || !restartAllowed(request.unit, options.units.allowed)) throw new OutpostError('INSTALLER_REFUSED', `unit ${request.unit} is not in the installer's commands.restartUnits or a health check's restart-unit remediation`);
      await options.units.control.restart(request.unit);
      return null;
  }
}

/** Starts answering on `listen` (a path, or a listening descriptor from systemd). */
export async function serveInstaller(options: InstallerServerOptions, listen: string | { fd: number }): Promise<Server> {
  const { log } = options;
  let changes: Promise<unknown> = Promise.resolve();
  let busy = 0;
  let idleTimer: NodeJS.Timeout | undefined;
  const server = createServer();
  const armIdle = () => {
    clearTimeout(idleTimer);
    if (options.idleExitMs > 0 && busy === 0) {
      idleTimer = setTimeout(() => {
        log.info('idle; exiting until the next request', { idleSec: options.idleExitMs / 1000 });
        server.close();
        options.onIdle();
      }, options.idleExitMs);
    }
  };

  const answer = async (line: string): Promise<InstallerAnswer> => {
    let request: InstallerRequest;
    try {
      const parsed = installerRequestSchema.safeParse(JSON.parse(line));
      if (!parsed.success) throw new OutpostError('INSTALLER_REFUSED', `not an installer request: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(request)'}: ${i.message}`).join('; ')}`);
      request = parsed.data;
    } catch (err) {
      const error = isOutpostError(err) ? err : new OutpostError('INSTALLER_REFUSED', `not JSON: ${(err as Error).message}`);
      log.warn('request refused', { error: error.message });
      return { ok: false, error: { code: error.code, message: error.message, transient: false } };
    }
    const started = performance.now();
    log.info('request', { ...request });
    const run = () => perform(options, request);
    // A change keeps the installer from idling out until it ends, even if its client went away.
    busy += 1;
    const pending = (opKinds[request.op] === 'query' ? run() : (changes = changes.then(run, run))).finally(() => {
      busy -= 1;
      armIdle();
    });
    try {
      const result = await pending;
      options.afterPerform?.(request.op);
      log.info('done', { op: request.op, ms: Math.round(performance.now() - started) });
      return { ok: true, result: result ?? null };
    } catch (err) {
      const error = isOutpostError(err) ? err : new OutpostError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
      log.warn('failed', { op: request.op, code: error.code, error: error.message, ms: Math.round(performance.now() - started) });
      return { ok: false, error: { code: error.code, message: error.message, transient: error.transient } };
    }
  };

  server.on('connection', (socket: Socket) => {
    busy += 1;
    clearTimeout(idleTimer);
    let buffered = '';
    let handled = false;
    const done = () => {
      busy -= 1;
      armIdle();
    };
    socket.once('close', done);
    // A client that connects and never finishes its request line must not hold off the idle exit.
    socket.setTimeout(requestLineMs, () => {
      if (!handled) socket.destroy();
    });
    socket.setEncoding('utf8');
    socket.on('error', (err) => log.debug('connection error', { err }));
    socket.on('data', (chunk: string) => {
      if (handled) return;
      buffered += chunk;
      const end = buffered.indexOf('\n');
      if (end < 0 && buffered.length <= maxLineBytes) return;
      handled = true;
      socket.setTimeout(0);
      const line = end < 0 ? '' : buffered.slice(0, end);
      void (async () => {
        const reply = end < 0 ? { ok: false as const, error: { code: 'INSTALLER_REFUSED' as const, message: `request longer than ${maxLineBytes} bytes`, transient: false } } : await answer(line);
        socket.end(`${JSON.stringify(reply)}\n`);
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(typeof listen === 'string' ? { path: listen } : listen, () => {
      server.off('error', reject);
      resolve();
    });
  });
  armIdle();
  return server;
}
