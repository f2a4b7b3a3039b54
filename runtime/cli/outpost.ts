#!/usr/bin/env node
/** `outpost`: the device daemon and its local commands. Argument handling only; work lives in the domains. */
import { join } from 'node:path';
import { apiGet, formatStatus, statusSchema } from '../api/index.js';
import { loadConfig, loadConfigLayers, validateConfigFile, defaultConfigPath } from '../config/index.js';
import { OutpostError } from '../errors.js';
import { outpostVersion } from '../version.js';
import { runMain, type Command, type CommandContext, type OptionSpec } from './command.js';
import { updateCommands } from './update-commands.js';
import { healthCommands } from './health-commands.js';
import { runDaemon } from './daemon.js';

const configOption: OptionSpec = { type: 'string', short: 'c', valueName: 'PATH', description: `config file (default $OUTPOST_CONFIG or ${defaultConfigPath})` };
const configPath = (values: Record<string, unknown>): { path?: string } => (typeof values.config === 'string' ? { path: values.config } : {});

const socketOption: OptionSpec = { type: 'string', valueName: 'PATH', description: 'API socket (default <runDir>/api.sock from the config)' };
const socketOf = ({ values, env }: CommandContext): string =>
  typeof values.socket === 'string' ? values.socket : join(loadConfig({ ...configPath(values), env }).paths.runDir, 'api.sock');

const commands: Command[] = [
  {
    name: 'run',
    summary: 'run the daemon (systemd starts this; Type=notify)',
    options: { config: configOption },
    details: 'Exits 78 on an invalid config (a setting of the overlay in the state dir that this release cannot read is left out with a warning instead), 65 on an unrecoverable state store, 0 after a clean stop.',
    run: async ({ values, env }) => runDaemon(loadConfigLayers({ ...configPath(values), env }), env, configPath(values)),
  },
  {
    name: 'installer',
    summary: 'run the privileged installer (systemd starts it from outpost-installer.socket)',
    options: { config: configOption },
    details: 'Answers the agent\'s typed requests (stage, deploy, trial, reboot) on installer.socket or the socket systemd passes; exits when idle for installer.idleExitSec.',
    // Only the image's config: the overlay in the state dir is the agent's to write, and through
    // it the agent could choose the installer's root of trust, its store or its pull URL.
    run: async ({ values, env }) => (await import('./installer.js')).runInstaller(loadConfig({ ...configPath(values), env, overlay: false }), env),
  },
  {
    name: 'status',
    summary: 'show what the running daemon reports',
    options: {
      config: configOption,
      json: { type: 'boolean', description: 'print the status document as JSON' },
      socket: socketOption,
    },
    run: async (ctx) => {
      const { values, out } = ctx;
      const socket = socketOf(ctx);
      const parsed = statusSchema.safeParse(await apiGet(socket, '/v1/status'));
      if (!parsed.success) throw new OutpostError('API_BAD_RESPONSE', `unexpected status document from ${socket}: ${parsed.error.issues[0]?.message ?? ''}`);
      out(values.json === true ? JSON.stringify(parsed.data, null, 2) : formatStatus(parsed.data));
      return 0;
    },
  },
  {
    name: 'config validate',
    summary: 'check a config file; prints every problem as file: field: message',
    args: 'PATH',
    positionals: { min: 1, max: 1 },
    run: async ({ positionals, out }) => {
      const file = positionals[0] ?? '';
      validateConfigFile(file);
      out(`${file}: ok`);
      return 0;
    },
  },
  ...updateCommands({ config: configOption, socket: socketOption }, socketOf),
  ...healthCommands({ config: configOption, socket: socketOption }, socketOf),
];

await runMain({ name: 'outpost', summary: 'outpost keeps this gateway updated and healthy.', commands }, outpostVersion);
