/**
 * `outpostctl repo …`: create and maintain the TUF repository devices update from. Every key is
 * read before anything is written, so a typo in a key path never leaves a half-changed repository.
 */
import { OutpostError } from '../errors.js';
import { publicOf, readPrivateKeyFile, type PrivateKey } from '../trust/index.js';
import { initRepository, openRepository, type PublishResult, type Repository } from '../update/tuf/index.js';
import { oneOf, positiveInt, requiredString, strings } from './ctl-args.js';
import type { Command, OptionSpec } from './command.js';

const keyFile = (description: string, multiple = false): OptionSpec => ({ type: 'string', valueName: 'FILE', description, ...(multiple ? { multiple: true } : {}) });
const readKeys = (files: string[]): Promise<PrivateKey[]> => Promise.all(files.map((f) => readPrivateKeyFile(f)));
const onlineRoles = ['targets', 'snapshot', 'timestamp'] as const;

function published(result: PublishResult): string {
  return `targets v${result.targets}, snapshot v${result.snapshot}, timestamp v${result.timestamp}`;
}

/** Fails early (before a root is written) when a key is not the role's in the repository's root. */
function requireRoleKey(repo: Repository, role: (typeof onlineRoles)[number], key: PrivateKey, file: string): void {
  if (!repo.root.roles[role].keyids.includes(key.keyid)) {
    throw new OutpostError('USAGE', `${file} (key ${key.keyid}) is not a ${role} key of root v${repo.root.version}`);
  }
}

/** The `repo` commands. */
export const repoCommands: Command[] = [
  {
    name: 'repo init',
    summary: 'create a TUF repository: root v1 plus empty targets, snapshot and timestamp',
    args: 'DIR',
    positionals: { min: 1, max: 1 },
    options: {
      'root-key': keyFile('private root key', true),
      'targets-key': keyFile('private targets key'),
      'snapshot-key': keyFile('private snapshot key'),
      'timestamp-key': keyFile('private timestamp key'),
      threshold: { type: 'string', valueName: 'N', description: 'root signatures required (default 1)' },
    },
    details: 'Writes root.json and 1.root.json (ship 1.root.json in the image as the initial root), targets.json, snapshot.json, timestamp.json.',
    run: async ({ values, positionals, out }) => {
      const dir = positionals[0] ?? '';
      const threshold = positiveInt(values, 'threshold') ?? 1;
      const rootFiles = strings(values, 'root-key', 1);
      const onlineFiles = onlineRoles.map((r) => requiredString(values, `${r}-key`));
      const rootKeys = await readKeys(rootFiles);
      const [targetsKey, snapshotKey, timestampKey] = await readKeys(onlineFiles);
      if (!targetsKey || !snapshotKey || !timestampKey) throw new OutpostError('INTERNAL', 'key files missing after reading');
      if (threshold > rootKeys.length) throw new OutpostError('USAGE', `--threshold ${threshold} needs at least ${threshold} --root-key files, got ${rootKeys.length}`);
      const repo = await initRepository(dir, { rootKeys, rootThreshold: threshold, targetsKey, snapshotKey, timestampKey });
      out(`created TUF repository ${dir}: root v${repo.versions.root} (${rootKeys.length} key(s), threshold ${threshold}), targets/snapshot/timestamp v1`);
      return 0;
    },
  },
  {
    name: 'repo rotate-root',
    summary: 'rotate root keys: a new root version signed by a threshold of the old and of the new keys',
    args: 'DIR',
    positionals: { min: 1, max: 1 },
    options: {
      'old-key': keyFile('private key of the current root, as many as its threshold', true),
      'new-key': keyFile('private key of the new root (each one signs)', true),
      threshold: { type: 'string', valueName: 'N', description: 'root signatures the new root requires (default: unchanged)' },
    },
    details: 'Writes N.root.json and root.json. Devices walk the chain 1.root.json, 2.root.json, ... on their next refresh.',
    run: async ({ values, positionals, out }) => {
      const threshold = positiveInt(values, 'threshold');
      const oldFiles = strings(values, 'old-key', 1);
      const newFiles = strings(values, 'new-key', 1);
      const repo = await openRepository(positionals[0] ?? '');
      const oldKeys = await readKeys(oldFiles);
      const newKeys = await readKeys(newFiles);
      const root = await repo.rotateRoot({ oldKeys, newKeys, ...(threshold === undefined ? {} : { threshold }) });
      out(`wrote ${root.version}.root.json: root keys ${root.roles.root.keyids.join(', ')} (threshold ${root.roles.root.threshold})`);
      return 0;
    },
  },
  {
    name: 'repo revoke-key',
    summary: "replace a compromised targets/snapshot/timestamp key: new root without it, role re-signed by the new key",
    args: 'DIR',
    positionals: { min: 1, max: 1 },
    options: {
      role: { type: 'string', valueName: 'ROLE', description: `role whose key is revoked: ${onlineRoles.join('|')}` },
      'key-id': { type: 'string', valueName: 'ID', description: 'key id to revoke (printed by keys generate; listed in root.json)' },
      'new-key': keyFile('private key replacing it'),
      'root-key': keyFile('private root key, as many as the root threshold', true),
      'targets-key': keyFile('private targets key (unless --role targets)'),
      'snapshot-key': keyFile('private snapshot key (unless --role snapshot)'),
      'timestamp-key': keyFile('private timestamp key (unless --role timestamp)'),
    },
    details: 'Writes a new N.root.json/root.json, then re-signs targets, snapshot and timestamp so devices see metadata the new root accepts.',
    run: async ({ values, positionals, out }) => {
      const repo = await openRepository(positionals[0] ?? '');
      const role = oneOf(values, 'role', onlineRoles);
      const keyId = requiredString(values, 'key-id');
      const newKey = await readPrivateKeyFile(requiredString(values, 'new-key'));
      const rootKeys = await readKeys(strings(values, 'root-key', 1));
      const signing = {} as Record<(typeof onlineRoles)[number], PrivateKey>;
      for (const r of onlineRoles) {
        if (r === role) {
          signing[r] = newKey;
          continue;
        }
        const file = requiredString(values, `${r}-key`);
        signing[r] = await readPrivateKeyFile(file);
        requireRoleKey(repo, r, signing[r], file);
      }
      const root = await repo.replaceRoleKeys({ role, revoke: [keyId], add: [publicOf(newKey)], rootKeys });
      const result = await repo.publish({ targetsKey: signing.targets, snapshotKey: signing.snapshot, timestampKey: signing.timestamp });
      out(`revoked ${role} key ${keyId} in root v${root.version}; ${role} key is now ${newKey.keyid}; published ${published(result)}`);
      return 0;
    },
  },
  {
    name: 'repo refresh',
    summary: 're-sign the timestamp (and the snapshot with --snapshot-key) before they expire',
    args: 'DIR',
    positionals: { min: 1, max: 1 },
    options: {
      'timestamp-key': keyFile('private timestamp key'),
      'snapshot-key': keyFile('private snapshot key (also re-sign the snapshot)'),
    },
    details: 'Timestamps expire after 1 day and snapshots after 7 by default: run this from a timer.',
    run: async ({ values, positionals, out }) => {
      const repo = await openRepository(positionals[0] ?? '');
      const timestampKey = await readPrivateKeyFile(requiredString(values, 'timestamp-key'));
      const snapshotFile = typeof values['snapshot-key'] === 'string' ? values['snapshot-key'] : undefined;
      const snapshotKey = snapshotFile === undefined ? undefined : await readPrivateKeyFile(snapshotFile);
      const result = await repo.refresh({ timestampKey, ...(snapshotKey ? { snapshotKey } : {}) });
      out(`published ${published(result)}`);
      return 0;
    },
  },
];
