#!/usr/bin/env node
/** `outpostctl`: the operator's tool. Each command group lives in its own ctl-*.ts file; rollouts and commands join as their issues land. */
import { outpostVersion } from '../version.js';
import { runProgram, type Command } from './command.js';
import { keyCommands } from './ctl-keys.js';
import { releaseCommands } from './ctl-release.js';
import { repoCommands } from './ctl-repo.js';

const commands: Command[] = [
  ...keyCommands,
  ...repoCommands,
  ...releaseCommands,
  {
    name: 'version',
    summary: 'print the outpostctl version',
    run: async ({ out }) => {
      out(outpostVersion);
      return 0;
    },
  },
];

const code = await runProgram({ name: 'outpostctl', summary: 'outpostctl signs releases and steers a fleet of outpost gateways.', commands }, process.argv.slice(2), {
  env: process.env,
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
});
process.exit(code);
