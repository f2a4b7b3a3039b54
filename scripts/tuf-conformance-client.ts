/**
 * The client-under-test CLI of the TUF conformance suite (tuf-conformance's CLIENT-CLI.md) over
 * outpost's own TUF client: `scripts/tuf-conformance.sh` runs the suite with it.
 *
 *   tuf-conformance-client --metadata-dir DIR init TRUSTED_ROOT
 *   tuf-conformance-client --metadata-dir DIR --metadata-url URL refresh
 *   tuf-conformance-client --metadata-dir DIR --metadata-url URL --target-name PATH... \
 *     --target-base-url URL --target-dir DIR download
 *
 * Exit code 0 on success, 1 on any failure.
 *
 * Outpost keeps trusted metadata in its state store, not in files: the store (and the root the
 * client starts from, as a device's image ships it) live in `DIR/.outpost/`. After every command
 * the metadata the client trusts is copied from the store to `DIR/<role>.json`, the files the
 * suite inspects: exactly the stored entries the client itself would load at its next refresh
 * (those still verifying under the trusted root, as `TufClient` re-checks them), and the initial
 * root while the store holds no root. The clock is the process's: the suite's `faketime` moves it.
 */
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createLogger, streamSink, type Logger } from '../runtime/logs/index.js';
import { Store } from '../runtime/store/index.js';
import { httpFetcher } from '../runtime/update/fetchers.js';
import {
  checkMetaFile,
  defaultMetadataMaxBytes,
  parseMetadata,
  requireThreshold,
  TufClient,
  TUF_COLLECTION,
  type TargetInfo,
  type TrustedTargets,
} from '../runtime/update/tuf/index.js';

const roles = ['root', 'timestamp', 'snapshot', 'targets'] as const;
/** How the client stores a role (client.ts's record schema, the part this wrapper reads). */
const storedRecord = z.union([z.object({ json: z.string() }), z.object({ time: z.string() })]);
const fetchDeadlineMs = 15_000;

class UsageError extends Error {}

interface Paths {
  metadataDir: string;
  state: string;
  store: string;
  initialRoot: string;
}

function paths(metadataDir: string): Paths {
  const state = join(metadataDir, '.outpost');
  return { metadataDir, state, store: join(state, 'store'), initialRoot: join(state, 'initial-root.json') };
}

/** `init`: keep the trusted root as the client's shipped root; no requests, no checks (CLIENT-CLI.md). */
async function init(p: Paths, trustedRoot: string): Promise<void> {
  await mkdir(p.state, { recursive: true });
  await copyFile(trustedRoot, p.initialRoot);
  await exportTrusted(p);
}

/** Opens the store and runs one refresh; the trusted files are exported whatever the outcome. */
async function refresh(p: Paths, metadataUrl: string, log: Logger): Promise<TrustedTargets> {
  const initialRoot = new Uint8Array(await readFile(p.initialRoot));
  const store = await Store.open({ location: p.store, version: 1 });
  try {
    const fetcher = httpFetcher(metadataUrl, { deadlineMs: fetchDeadlineMs, log });
    const client = new TufClient({ store, fetcher, initialRoot, now: () => new Date(), log });
    return await client.refresh();
  } finally {
    await store.close();
    await exportTrusted(p);
  }
}

/**
 * Writes `<role>.json` for each role the client trusts, and removes it for each role it does not.
 * A stored role counts only if it parses and verifies under the trusted root, the test
 * `TufClient.loadLocal` applies before using it (expiry is judged per refresh, as python-tuf's
 * metadata directory also keeps expired files).
 */
async function exportTrusted(p: Paths): Promise<void> {
  const stored = new Map<string, Uint8Array>();
  try {
    const store = await Store.open({ location: p.store, version: 1 });
    try {
      for (const [key, record] of await store.collection(TUF_COLLECTION, storedRecord).entries()) {
        if ('json' in record) stored.set(key, new TextEncoder().encode(record.json));
      }
    } finally {
      await store.close();
    }
  } catch (err) {
    // Before the first refresh there is no store yet; anything else is a real fault.
    if (await exists(p.store)) throw err;
  }
  const rootBytes = stored.get('root') ?? new Uint8Array(await readFile(p.initialRoot));
  const root = parseMetadata('root', rootBytes, defaultMetadataMaxBytes.root, 'trusted root.json', 'stored');
  for (const role of roles) {
    const file = join(p.metadataDir, `${role}.json`);
    let bytes = role === 'root' ? rootBytes : stored.get(role);
    if (bytes !== undefined && role !== 'root') {
      try {
        requireThreshold(root.signed, role, parseMetadata(role, bytes, defaultMetadataMaxBytes[role], `stored ${role}.json`, 'stored'), `stored ${role}.json`);
      } catch {
        bytes = undefined;
      }
    }
    if (bytes === undefined) await rm(file, { force: true });
    else await writeAtomically(file, bytes);
  }
}

/** `download`: refresh, then fetch each target in order, verified against trusted targets metadata. */
async function download(p: Paths, metadataUrl: string, names: string[], targetBaseUrl: string, targetDir: string, log: Logger): Promise<void> {
  const trusted = await refresh(p, metadataUrl, log);
  const fetcher = httpFetcher(targetBaseUrl, { deadlineMs: fetchDeadlineMs, log });
  await mkdir(targetDir, { recursive: true });
  for (const name of names) {
    const target = trusted.get(name);
    if (target === undefined) throw new Error(`target ${JSON.stringify(name)} is not in the trusted targets metadata (v${trusted.versions.targets})`);
    // One flat file per target path: the path's segments never reach the file system.
    const file = join(targetDir, encodeURIComponent(name));
    const cached = await readFile(file).catch(() => undefined);
    if (cached !== undefined && verifies(target, cached)) {
      log.info('target already downloaded and verified', { target: name });
      continue;
    }
    const path = trusted.filePath(target).split('/').map(encodeURIComponent).join('/');
    const bytes = await fetcher.fetch(path, target.length);
    if (bytes === undefined) throw new Error(`the repository has no ${path} for target ${JSON.stringify(name)}`);
    checkMetaFile(bytes, target, `target ${JSON.stringify(name)} from ${path}`, `targets v${trusted.versions.targets}`);
    await writeAtomically(file, bytes);
    log.info('target downloaded and verified', { target: name, length: bytes.length });
  }
}

/** Whether `bytes` are the target the trusted metadata describes (length and every listed hash). */
function verifies(target: TargetInfo, bytes: Uint8Array): boolean {
  try {
    checkMetaFile(bytes, target, target.name, 'targets');
    return true;
  } catch {
    return false;
  }
}

async function writeAtomically(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      'metadata-dir': { type: 'string' },
      'metadata-url': { type: 'string' },
      'target-name': { type: 'string', multiple: true },
      'target-base-url': { type: 'string' },
      'target-dir': { type: 'string' },
    },
  });
  const need = (name: keyof typeof values): string => {
    const value = values[name];
    if (typeof value !== 'string') throw new UsageError(`--${name} is required`);
    return value;
  };
  const log = createLogger({ level: 'debug', sinks: [streamSink(process.stderr)], component: 'tuf-conformance-client' });
  const p = paths(need('metadata-dir'));
  const [command, ...rest] = positionals;
  switch (command) {
    case 'init':
      if (rest.length !== 1 || rest[0] === undefined) throw new UsageError('init takes one argument: the trusted root file');
      return init(p, rest[0]);
    case 'refresh':
      await refresh(p, need('metadata-url'), log);
      return;
    case 'download': {
      const names = values['target-name'] ?? [];
      if (names.length === 0) throw new UsageError('download needs --target-name');
      return download(p, need('metadata-url'), names, need('target-base-url'), need('target-dir'), log);
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)} (init, refresh or download)`);
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    const code = typeof err === 'object' && err !== null && 'code' in err ? ` [${String(err.code)}]` : '';
    process.stderr.write(`tuf-conformance-client: ${err instanceof Error ? err.message : String(err)}${code}\n`);
    process.exit(1);
  },
);
