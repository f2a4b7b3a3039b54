#!/usr/bin/env node
// Builds the optional N-API addon; run by `npm ci`/`npm install` through the "install" script.
//
// The addon is optional: without it outpost notifies systemd through the `systemd-notify` binary
// and has no hardware watchdog. So a failed build warns in one line and exits 0, never failing the
// install, unless OUTPOST_NATIVE_REQUIRED=1 (CI, image builds) makes it fatal. The full node-gyp
// output goes to native/build.log for whoever needs to know why.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const output = join(here, 'build', 'Release', 'outpost_native.node');
const logFile = join(here, 'build.log');
const required = process.env.OUTPOST_NATIVE_REQUIRED === '1';

function finish(ok, reason) {
  if (ok) {
    console.log(`outpost: native addon built (${output})`);
    process.exit(0);
  }
  console.warn(`outpost: native addon not built (${reason}); falling back to systemd-notify, hardware watchdog disabled`);
  process.exit(required ? 1 : 0);
}

// node-gyp candidates, best first: the one npm names for lifecycle scripts, the `node-gyp` shim
// npm puts on PATH, then npm's bundled copy next to this node (for a plain `node native/build.mjs`).
function nodeGypCommands() {
  const cmds = [];
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) cmds.push([process.execPath, [fromNpm]]);
  cmds.push(['node-gyp', []]);
  const bundled = resolve(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  if (existsSync(bundled)) cmds.push([process.execPath, [bundled]]);
  return cmds;
}

// Point node-gyp at this node's installed headers so it does not download them: device and image
// builds are often offline. An explicit --nodedir (npm_config_nodedir, e.g. Buildroot's) wins.
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function reasonFrom(text, status) {
  const lines = text.split('\n');
  const compiler = lines.find((l) => /\berror: /.test(l));
  if (compiler) return compiler.trim();
  const stack = lines.find((l) => /gyp ERR! stack Error: /.test(l));
  if (stack) return stack.replace(/.*gyp ERR! stack Error: /, 'node-gyp: ').trim();
  return `node-gyp exited with status ${status}`;
}

if (process.platform !== 'linux') finish(false, `${process.platform} is not Linux`);

let log = '';
for (const [cmd, pre] of nodeGypCommands()) {
  const args = [...pre, 'rebuild', ...nodedirArgs()];
  const res = spawnSync(cmd, args, {
    cwd: here,
    encoding: 'utf8',
    timeout: 5 * 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (res.error && res.error.code === 'ENOENT') continue; // this candidate is not installed
  log = `$ ${cmd} ${args.join(' ')}\n${res.stdout ?? ''}${res.stderr ?? ''}`;
  writeFileSync(logFile, log);
  if (res.error) finish(false, `${res.error.message}; see ${logFile}`);
  if (res.status !== 0) finish(false, `${reasonFrom(log, res.status)}; see ${logFile}`);
  finish(existsSync(output), `node-gyp succeeded but ${output} is missing`);
}
finish(false, 'node-gyp not found (npm normally provides it)');
