/**
 * The grants' 60 s checkpoint reads the records and writes them back: a revoke committed in
 * between must not be written back as `active` (the key would stay until the next start).
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { z } from 'zod';
import { AccessService, accessSettings, localAccessHost } from '../../../runtime/access/index.js';
import { Outbox } from '../../../runtime/link/index.js';
import { createLogger } from '../../../runtime/logs/index.js';
import { createExec } from '../../../runtime/platform/index.js';
import { Store } from '../../../runtime/store/index.js';
import { sshPublicKey } from '../../fixtures/access-service.js';

const log = createLogger({ level: 'error', sinks: [] });

t.test('a revoke while a checkpoint is between its read and its write stays revoked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'outpost-access-checkpoint-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const sub of ['keys', 'proc', 'state']) mkdirSync(join(dir, sub));
  writeFileSync(join(dir, 'passwd'), '');
  const store = await Store.open({ location: join(dir, 'db'), version: 1 });
  t.teardown(() => store.close());
  const outbox = await Outbox.open(store, { maxBytes: 1024 * 1024, log });
  // Holds the first read of the grants after `hold` is armed, once it has read.
  let hold: Promise<void> | undefined;
  let release = (): void => undefined;
  const held = new Proxy(store, {
    get(target, property, receiver) {
      if (property !== 'collection') return Reflect.get(target, property, receiver) as unknown;
      return (name: string, schema: z.ZodType) => {
        const collection = target.collection(name, schema);
        if (name !== 'access-grants') return collection;
        return new Proxy(collection, {
          get(c, p, r) {
            if (p !== 'entries') return Reflect.get(c, p, r) as unknown;
            return async () => {
              const read = await c.entries();
              const gate = hold;
              hold = undefined;
              if (gate) await gate;
              return read;
            };
          },
        });
      };
    },
  });
  const principal = 'jit-nobody';
  const service = new AccessService({
    settings: accessSettings({ principals: [principal], maxDurationSec: 3600, sshdPort: 22, tunnels: false, tunnelHosts: [], loginPollSec: 3600 }, join(dir, 'state')),
    deviceId: 'gw-1',
    store: () => held,
    outbox: () => outbox,
    host: localAccessHost({ keysDir: join(dir, 'keys'), principals: [principal], maxDurationSec: 3600, log, procDir: join(dir, 'proc'), passwdFile: join(dir, 'passwd') }),
    exec: createExec(log),
    log,
    bootId: async () => 'boot-1',
  });
  await service.start();
  t.teardown(() => service.stop());
  await service.grant('g-1', { publicKey: sshPublicKey(), principal, durationSec: 600 });
  t.equal((await service.active()).length, 1, 'granted');

  hold = new Promise((resolve) => (release = resolve));
  const checkpoint = (service as unknown as { checkpoint(): Promise<void> }).checkpoint();
  await new Promise((r) => setTimeout(r, 50));
  const revoked = service.revoke({ grantId: 'g-1' });
  await new Promise((r) => setTimeout(r, 300));
  release();
  await Promise.all([checkpoint, revoked]);
  await new Promise((r) => setTimeout(r, 100));
  t.same(await service.active(), [], 'the grant stays ended');
});
