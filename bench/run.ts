/**
 * `npm run bench`: runs every benchmark, writes bench/results/<name>.json, and regenerates the
 * summary tables in bench/README.md between their BEGIN/END markers.
 * OUTPOST_BENCH_IDLE_SEC shortens the idle period (default 60 s) for a quick look;
 * OUTPOST_BENCH_ONLY=startup-memory|commands|ota|health-overhead (comma-separated) runs only those sections;
 * OUTPOST_BENCH_COMMANDS shortens the command round-trip runs (default 1000 commands each);
 * OUTPOST_BENCH_HEALTH_SETTLE_SEC, OUTPOST_BENCH_HEALTH_WINDOW_SEC and OUTPOST_BENCH_HEALTH_ROUNDS
 * set the health overhead's settle period, window and number of windows (default 30 s, 180 s, 3);
 * OUTPOST_BENCH_HEALTH_BASE the commit it builds for the daemon before health ('none' skips it),
 * OUTPOST_BENCH_HEALTH_REV a commit it builds and measures instead of dist.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../runtime/version.js';
import { benchCommands, commandsTables } from './commands.js';
import { benchHealthOverhead, defaultHealthBaseRev, healthOverheadTables } from './health-overhead.js';
import { benchOta, otaTables } from './ota-bytes.js';
import { benchStartupMemory, daemonNodeOptions } from './startup-memory.js';

const root = packageRoot() ?? process.cwd();
const idleSec = Number(process.env.OUTPOST_BENCH_IDLE_SEC ?? 60);
const only = process.env.OUTPOST_BENCH_ONLY?.split(',').map((s) => s.trim());
const wanted = (name: string): boolean => only === undefined || only.includes(name);
const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-'));
const machine = { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown' };
const measuredOn = (): string => `Measured ${new Date().toISOString().slice(0, 10)} on ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node};`;

function writeResult(name: string, value: Record<string, unknown>): void {
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(join(root, 'bench', 'results', `${name}.json`), `${JSON.stringify({ at: new Date().toISOString(), machine, ...value }, null, 2)}\n`);
}

function writeTable(name: string, table: string): void {
  const readmePath = join(root, 'bench', 'README.md');
  const readme = readFileSync(readmePath, 'utf8');
  const markers = new RegExp(`(<!-- BEGIN ${name} -->\\n)(?:[\\s\\S]*?\\n)?(<!-- END ${name} -->)`);
  if (!markers.test(readme)) throw new Error(`bench/README.md has no <!-- BEGIN ${name} --> / <!-- END ${name} --> markers`);
  writeFileSync(readmePath, readme.replace(markers, (_m, begin: string, end: string) => `${begin}${table}\n${end}`));
  process.stdout.write(`${table}\n`);
}

try {
  if (wanted('startup-memory')) {
    mkdirSync(join(dir, 'startup-memory'));
    const rows = await benchStartupMemory(join(dir, 'startup-memory'), idleSec);
    writeResult('startup-memory', { idleSec, daemonNodeOptions, rows });
    writeTable('startup-memory', [
      `${measuredOn()} idle ${idleSec} s.`,
      '',
      '| subject | time to READY=1 | idle RssAnon | idle Rss |',
      '|---|---|---|---|',
      ...rows.map((r) => {
        const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
        const started = r.installer ? `; started ${r.installer.activations}×` : '';
        const idle = r.installer && !r.installer.running ? [`0 (exited${started})`, '0'] : [`${mib(r.idle.rssAnonKiB)}${r.installer ? ` (running${started})` : ''}`, mib(r.idle.rssKiB)];
        return `| ${r.subject} | ${r.readyMs === null ? '—' : `${r.readyMs} ms`} | ${idle[0]} | ${idle[1]} |`;
      }),
    ].join('\n'));
  }
  if (wanted('commands')) {
    mkdirSync(join(dir, 'commands'));
    const started = performance.now();
    const result = await benchCommands(join(dir, 'commands'), idleSec, (line) => process.stdout.write(`${line}\n`));
    const totalSec = Math.round((performance.now() - started) / 1000);
    writeResult('commands', { totalSec, ...result });
    writeTable('commands', commandsTables(result, `${measuredOn()} ${totalSec} s for this section.`));
  }
  if (wanted('ota')) {
    mkdirSync(join(dir, 'ota'));
    const started = performance.now();
    const result = await benchOta(join(dir, 'ota'), (line) => process.stdout.write(`${line}\n`));
    const totalSec = Math.round((performance.now() - started) / 1000);
    writeResult('ota', { totalSec, ...result });
    writeTable('ota', otaTables(result, `${measuredOn()} ${totalSec} s for this section${result.tree.cache.cached ? ' (rootfs from the cache)' : ` (${result.tree.cache.buildSec} s of it building the rootfs)`}.`));
  }
  if (wanted('health-overhead')) {
    mkdirSync(join(dir, 'health-overhead'));
    const started = performance.now();
    const base = process.env.OUTPOST_BENCH_HEALTH_BASE ?? defaultHealthBaseRev;
    const result = await benchHealthOverhead(join(dir, 'health-overhead'), {
      settleSec: Number(process.env.OUTPOST_BENCH_HEALTH_SETTLE_SEC ?? 30),
      windowSec: Number(process.env.OUTPOST_BENCH_HEALTH_WINDOW_SEC ?? 180),
      rounds: Number(process.env.OUTPOST_BENCH_HEALTH_ROUNDS ?? 3),
      baseRev: base === 'none' ? null : base,
      rev: process.env.OUTPOST_BENCH_HEALTH_REV ?? null,
    }, (line) => process.stdout.write(`${line}\n`));
    const totalSec = Math.round((performance.now() - started) / 1000);
    writeResult('health-overhead', { totalSec, ...result });
    writeTable('health-overhead', healthOverheadTables(result, `${measuredOn()} ${totalSec} s for this section; settle ${result.settleSec} s, ${result.rounds} windows of ${result.windowSec} s; ${result.rev === null ? 'dist' : `built from ${result.rev}`}; load average ${result.loadAvg.before[0]} before, ${result.loadAvg.after[0]} after.`));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
