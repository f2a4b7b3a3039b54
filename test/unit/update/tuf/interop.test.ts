/**
 * Interop with the reference TypeScript TUF implementation (@tufjs/models 3.x): what outpostctl
 * writes verifies there, and what it signs is accepted by the outpost client.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Key, Metadata, MetadataKind, MetaFile, Root, Signature, Snapshot, Targets, TargetFile, Timestamp } from '@tufjs/models';
import { silentLogger } from '../../../../runtime/logs/index.js';
import { Store } from '../../../../runtime/store/index.js';
import { generateKey, sign, toHex, type PrivateKey } from '../../../../runtime/trust/index.js';
import { releasesFor, TufClient } from '../../../../runtime/update/tuf/index.js';
import { DAY, DirFetcher, HOUR, T0, releaseTarget, tempDir, world } from './fixture.js';

type Json = Parameters<typeof Metadata.fromJSON>[1];
const load = (dir: string, name: string): Json => JSON.parse(readFileSync(join(dir, name), 'utf8')) as Json;

t.test('metadata written by outpostctl verifies with @tufjs/models', async (t) => {
  const w = await world(t, { rootKeys: (k) => [k.root, k.root2], rootThreshold: 2 });
  const release = releaseTarget(3, 'a'.repeat(64), 'b'.repeat(64));
  w.repo.addTarget(release.name, release.file);
  await w.publish();

  const root = Metadata.fromJSON(MetadataKind.Root, load(w.repoDir, 'root.json'));
  const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, load(w.repoDir, 'timestamp.json'));
  const snapshot = Metadata.fromJSON(MetadataKind.Snapshot, load(w.repoDir, 'snapshot.json'));
  const targets = Metadata.fromJSON(MetadataKind.Targets, load(w.repoDir, 'targets.json'));
  t.doesNotThrow(() => root.verifyDelegate('root', root), 'root is self-signed by a threshold');
  t.doesNotThrow(() => root.verifyDelegate('timestamp', timestamp));
  t.doesNotThrow(() => root.verifyDelegate('snapshot', snapshot));
  t.doesNotThrow(() => root.verifyDelegate('targets', targets));
  // Key ids agree with tuf-js's view of the keys, and the meta hashes with the files.
  for (const [id, key] of Object.entries(root.signed.keys)) t.equal(key.keyID, id);
  t.doesNotThrow(() => timestamp.signed.snapshotMeta.verify(readFileSync(join(w.repoDir, 'snapshot.json'))));
  t.doesNotThrow(() => snapshot.signed.meta['targets.json']?.verify(readFileSync(join(w.repoDir, 'targets.json'))));
  t.same(targets.signed.targets[release.name]?.custom, release.file.custom);
  t.equal(root.signed.isExpired(new Date(T0.getTime() + 364 * DAY)), false);
  t.equal(timestamp.signed.isExpired(new Date(T0.getTime() + DAY)), true);

  // A tampered file fails there too (the check is real).
  const tampered = load(w.repoDir, 'targets.json') as { signed: { targets: Record<string, { length: number }> } };
  const entry = tampered.signed.targets[release.name];
  if (entry) entry.length = 1;
  t.throws(() => root.verifyDelegate('targets', Metadata.fromJSON(MetadataKind.Targets, tampered as unknown as Json)));

  // Root rotation: 2.root.json is accepted by root v1 and by itself, as tuf-js's updater requires.
  const newRootKey = generateKey();
  await w.repo.rotateRoot({ oldKeys: [w.keys.root, w.keys.root2], newKeys: [newRootKey], threshold: 1 });
  const root2 = Metadata.fromJSON(MetadataKind.Root, load(w.repoDir, '2.root.json'));
  t.doesNotThrow(() => root.verifyDelegate('root', root2), 'v1 vouches for v2');
  t.doesNotThrow(() => root2.verifyDelegate('root', root2), 'v2 vouches for itself');
  t.equal(root2.signed.version, 2);
});

/** A tuf-js signer backed by outpost's ed25519 (any correct ed25519 signer would do). */
const signer = (key: PrivateKey) => (data: Buffer) => new Signature({ keyID: key.keyid, sig: sign(key, new Uint8Array(data)).sig });
const tufKey = (key: PrivateKey) => new Key({ keyID: key.keyid, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: toHex(key.publicKey) } });
const write = (dir: string, name: string, md: { toJSON(): unknown }) => writeFileSync(join(dir, name), JSON.stringify(md.toJSON()));

t.test('metadata built and signed with @tufjs/models is accepted by the outpost client', async (t) => {
  const dir = tempDir(t, 'outpost-tufjs-repo-');
  mkdirSync(dir, { recursive: true });
  const keys = { root: generateKey(), targets: generateKey(), snapshot: generateKey(), timestamp: generateKey() };
  const expires = (ms: number) => new Date(T0.getTime() + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

  const root = new Metadata(new Root({ specVersion: '1.0.31', version: 1, expires: expires(365 * DAY), consistentSnapshot: false }));
  for (const role of ['root', 'targets', 'snapshot', 'timestamp'] as const) root.signed.addKey(tufKey(keys[role]), role);
  root.sign(signer(keys.root));

  const release = releaseTarget(7, 'c'.repeat(64));
  const targets = new Metadata(new Targets({ specVersion: '1.0.31', version: 1, expires: expires(90 * DAY) }));
  targets.signed.addTarget(new TargetFile({ path: release.name, length: 0, hashes: release.file.hashes, unrecognizedFields: { custom: release.file.custom } }));
  targets.signed.addTarget(new TargetFile({ path: 'docs/readme.txt', length: 5, hashes: { sha256: 'd'.repeat(64) } }));
  targets.sign(signer(keys.targets));
  write(dir, 'targets.json', targets);

  const targetsBytes = readFileSync(join(dir, 'targets.json'));
  const snapshot = new Metadata(new Snapshot({ specVersion: '1.0.31', version: 1, expires: expires(7 * DAY), meta: { 'targets.json': new MetaFile({ version: 1, length: targetsBytes.length }) } }));
  snapshot.sign(signer(keys.snapshot));
  write(dir, 'snapshot.json', snapshot);

  const timestamp = new Metadata(new Timestamp({ specVersion: '1.0.31', version: 1, expires: expires(DAY), snapshotMeta: new MetaFile({ version: 1 }) }));
  timestamp.sign(signer(keys.timestamp));
  write(dir, 'timestamp.json', timestamp);
  write(dir, '1.root.json', root);

  const store = await Store.open({ location: join(tempDir(t, 'outpost-tufjs-store-'), 'db'), version: 1 });
  t.teardown(() => store.close());
  const client = new TufClient({ store, fetcher: new DirFetcher(dir), initialRoot: new Uint8Array(readFileSync(join(dir, '1.root.json'))), now: () => new Date(T0.getTime() + HOUR), log: silentLogger });
  const trusted = await client.refresh();
  t.same(trusted.versions, { root: 1, timestamp: 1, snapshot: 1, targets: 1 });
  t.same(trusted.get('docs/readme.txt'), { name: 'docs/readme.txt', length: 5, hashes: { sha256: 'd'.repeat(64) }, custom: {} });
  t.same(releasesFor(trusted.list(), 'gw-1', 'aarch64')[0]?.custom, release.file.custom);

  // A root rotation done with tuf-js (new root key, signed by old and new) is walked by outpost.
  const newRootKey = generateKey();
  const root2 = new Metadata(new Root({ specVersion: '1.0.31', version: 2, expires: expires(365 * DAY), consistentSnapshot: false }));
  root2.signed.addKey(tufKey(newRootKey), 'root');
  for (const role of ['targets', 'snapshot', 'timestamp'] as const) root2.signed.addKey(tufKey(keys[role]), role);
  root2.sign(signer(keys.root));
  root2.sign(signer(newRootKey));
  write(dir, '2.root.json', root2);
  // Bump the timestamp so the refresh has something new to fetch.
  const timestamp2 = new Metadata(new Timestamp({ specVersion: '1.0.31', version: 2, expires: expires(DAY), snapshotMeta: new MetaFile({ version: 1 }) }));
  timestamp2.sign(signer(keys.timestamp));
  write(dir, 'timestamp.json', timestamp2);
  const after = await client.refresh();
  t.same([after.versions.root, after.versions.timestamp], [2, 2]);

  // And a signature by a key tuf-js's root does not list is refused.
  const stranger = generateKey();
  const forged = new Metadata(new Timestamp({ specVersion: '1.0.31', version: 3, expires: expires(DAY), snapshotMeta: new MetaFile({ version: 1 }) }));
  forged.sign(signer(stranger));
  write(dir, 'timestamp.json', forged);
  await t.rejects(client.refresh(), { code: 'UPDATE_SIGNATURE' });
});
