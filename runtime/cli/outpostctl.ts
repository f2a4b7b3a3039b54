#!/usr/bin/env node
/** `outpostctl`: the operator's tool. Each command group lives in its own ctl-*.ts file; rollouts and commands join as their issues land. */
import { outpostVersion } from '../version.js';
import { runMain, type Command } from './command.js';
import { keyCommands } from './ctl-keys.js';
import { releaseCommands } from './ctl-release.js';
import { repoCommands } from './ctl-repo.js';

const commands: Command[] = [
  ...keyCommands,
  ...repoCommands,
  ...releaseCommands,
];

await runMain({ name: 'outpostctl', summary: 'outpostctl signs releases and steers a fleet of outpost gateways.', commands }, outpostVersion);
