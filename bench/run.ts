/**
 * `npm run bench`: runs every benchmark, writes bench/results/<name>.json, and regenerates the
 * summary table in bench/README.md between its BEGIN/END markers.
 * OUTPOST_BENCH_IDLE_SEC shortens the idle period (default 60 s) for a quick look.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../runtime/version.js';
import { benchStartupMemory, daemonNodeOptions } from './startup-memory.js';

const root = packageRoot() ?? process.cwd();
const idleSec = Number(process.env.OUTPOST_BENCH_IDLE_SEC ?? 60);
const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-'));
const machine = { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown' };

try {
  const rows = await benchStartupMemory(dir, idleSec);
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(join(root, 'bench', 'results', 'startup-memory.json'), `${JSON.stringify({ at: new Date().toISOString(), idleSec, daemonNodeOptions, machine, rows }, null, 2)}\n`);
  const table = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}; idle ${idleSec} s.`,
    '',
    '| subject | time to READY=1 | idle RssAnon | idle Rss |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.subject} | ${r.readyMs === null ? '—' : `${r.readyMs} ms`} | ${(r.idle.rssAnonKiB / 1024).toFixed(1)} MiB | ${(r.idle.rssKiB / 1024).toFixed(1)} MiB |`),
  ].join('\n');
  const readmePath = join(root, 'bench', 'README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const updated = readme.replace(/(<!-- BEGIN startup-memory -->\n)[\s\S]*?(\n<!-- END startup-memory -->)/, `$1${table}$2`);
  writeFileSync(readmePath, updated);
  process.stdout.write(`${table}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
