#!/usr/bin/env node
/** `outpostctl`: the operator's tool. Each command group lives in its own ctl-*.ts file; rollouts join as their issue lands. */
import { outpostVersion } from '../version.js';
import { runMain, type Command } from './command.js';
import { commandCommands } from './ctl-commands.js';
import { keyCommands } from './ctl-keys.js';
import { releaseCommands } from './ctl-release.js';
import { repoCommands } from './ctl-repo.js';

const commands: Command[] = [
  ...keyCommands,
  ...repoCommands,
  ...releaseCommands,
  ...commandCommands,
];

await runMain({ name: 'outpostctl', summary: 'outpostctl signs releases and steers a fleet of outpost gateways.', commands }, outpostVersion);
