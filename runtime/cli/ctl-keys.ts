/** `outpostctl keys …`: ed25519 signing keys for the TUF roles and for signed commands. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKey, writePrivateKeyFile, writePublicKeyFile } from '../trust/index.js';
import { oneOf, optionalString, requiredString } from './ctl-args.js';
import type { Command } from './command.js';

/** Roles a key can be generated for. */
export const keyRoles = ['root', 'targets', 'snapshot', 'timestamp', 'commands'] as const;

/** The `keys` commands. */
export const keyCommands: Command[] = [
  {
    name: 'keys generate',
    summary: 'generate an ed25519 key pair: <name>.key (private, 0600) and <name>.pub',
    options: {
      role: { type: 'string', valueName: 'ROLE', description: `what the key signs: ${keyRoles.join('|')}` },
      out: { type: 'string', valueName: 'DIR', description: 'directory for the key files (created 0700 if missing)' },
      name: { type: 'string', valueName: 'NAME', description: 'file base name (default: the role; use e.g. root-2 for a second root key)' },
    },
    details: 'Existing key files are never overwritten. Keep root and targets keys offline.',
    run: async ({ values, out }) => {
      const role = oneOf(values, 'role', keyRoles);
      const dir = requiredString(values, 'out');
      const name = optionalString(values, 'name') ?? role;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const key = generateKey();
      // Private first: if it cannot be written, no orphan public key claims a key exists.
      await writePrivateKeyFile(join(dir, `${name}.key`), key);
      await writePublicKeyFile(join(dir, `${name}.pub`), key);
      out(`${role} key ${key.keyid}\n  private: ${join(dir, `${name}.key`)} (mode 0600)\n  public:  ${join(dir, `${name}.pub`)}`);
      return 0;
    },
  },
];
