/**
 * The demo's health part: a required check that fails and is fixed by its own `exec` remediation,
 * `outpost health` and its exit code through that, and a check whose remediation is a reboot that
 * does not help, so the reboot circuit breaker opens after `maxReboots` (simulated) reboots and
 * outpost asks for a person instead; the operator fixes the fault and resets the breaker.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import type { OtaDevice } from '../world/ota-device.js';
import { until } from '../world/until.js';
import { heading, show } from './ui.js';

export interface HealthDemo {
  readonly device: OtaDevice;
  /** Writes the device's config with this `health` section and restarts the daemon to take it up. */
  configure(health: Record<string, unknown>): Promise<void>;
  /** Resolves with the running daemon's output once it has exited (a simulated reboot). */
  exited(): Promise<string>;
  /** Starts the daemon again, as the (simulated) bootloader would. */
  boot(): Promise<void>;
  /** mosquitto_sub's connection options (an observer's certificate). */
  readonly sub: readonly string[];
  readonly deviceId: string;
}

/** Kept low so the breaker opens within the demo; the default is 3 per 24 h. */
const maxReboots = 2;

/** The health section: short intervals and no flap damping, so each step takes seconds (defaults: 30 s, failAfter 3). */
function healthSection(dir: string): Record<string, unknown> {
  return {
    backoffMinSec: 1,
    backoffMaxSec: 10,
    rebootBreaker: { maxReboots, windowSec: 3600 },
    checks: [
      // intervalSec 4: the check stays failing for one interval after the fix, long enough to look at.
      { name: 'app-lock', kind: 'exec', severity: 'required', intervalSec: 4, failAfter: 1, command: [join(dir, 'app-check')], remediation: { action: 'exec', command: ['/bin/rm', '-f', join(dir, 'app.lock')] } },
      { name: 'modem', kind: 'exec', severity: 'required', intervalSec: 1, failAfter: 1, command: [join(dir, 'modem-check')], remediation: { action: 'reboot' } },
    ],
  };
}

/** The checks' programs, as an image would ship them under /usr/libexec. */
function writeCheckScripts(dir: string): void {
  const script = (name: string, body: string) => writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  script('app-check', `test ! -e ${join(dir, 'app.lock')} || { echo "stale app.lock: the app will not start" >&2; exit 1; }`);
  script('modem-check', `test ! -e ${join(dir, 'modem.wedged')} || { echo "modem not responding" >&2; exit 1; }`);
}

/** One line per event, for people; the events themselves also carry the detail and measurements. */
function eventLine(event: Record<string, unknown>): string {
  const at = typeof event.at === 'string' ? event.at.slice(11, 23) : '?';
  if (event.type === 'health-check-changed') return `${at} ${String(event.type)} ${String(event.check)}: ${String(event.from)} → ${String(event.to)}`;
  const next = typeof event.nextInMs === 'number' ? `, again in ${(event.nextInMs / 1000).toFixed(1)} s if still failing` : '';
  return `${at} ${String(event.type)} ${String(event.check)}: ${String(event.action)} ${String(event.outcome)} (attempt ${String(event.attempt)}${next})`;
}

/** One line per check, so the config reads at a glance. */
function describe(health: Record<string, unknown>): string {
  const { checks, ...rest } = health;
  return `"health": {\n  ${JSON.stringify(rest).slice(1, -1)},\n  "checks": [\n    ${(checks as unknown[]).map((c) => JSON.stringify(c)).join(',\n    ')}\n  ]\n}`;
}

export async function showHealth(demo: HealthDemo): Promise<void> {
  const { device } = demo;
  const dir = join(device.world.dir, 'health-demo');
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, 'app.lock');
  const wedged = join(dir, 'modem.wedged');
  writeCheckScripts(dir);
  /** The real output with the temp dir's path written as $D, as a shell session would. */
  const short = (text: string) => text.replaceAll(dir, '$D');
  const health = async (args: string[] = []) => {
    const r = await device.cli(['health', ...args]);
    return { exitCode: r.exitCode, stdout: r.stdout, text: short(`$ outpost ${['health', ...args].join(' ')}; echo "exit $?"\n${r.stdout}${r.stderr ? `\n${r.stderr}` : ''}\nexit ${String(r.exitCode)}`) };
  };
  /** Polls `outpost health` until `ready` holds for its result, which is returned. */
  const healthWhen = (what: string, ready: (r: Awaited<ReturnType<typeof health>>) => boolean, args: string[] = []) =>
    until(what, async () => {
      const r = await health(args);
      return ready(r) ? r : undefined;
    }, 30_000);

  const events: string[] = [];
  // Started before the daemon restarts with the checks: subscribed before anything can fail.
  const watcher = execa('mosquitto_sub', [...demo.sub, '-t', `outpost/v1/${demo.deviceId}/events`], { reject: false, buffer: false });
  // A chunk may end inside a line: its rest comes with the next one.
  let partial = '';
  watcher.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    events.push(...lines.filter((line) => line.includes('"type":"health-')));
  });
  let shown = 0;
  /** Waits for an event of `check` that `matches`, then shows that check's events since the last call. */
  const showEventsUntil = async (check: string, what: string, matches: (event: Record<string, unknown>) => boolean) => {
    const of = () => events.slice(shown).map((line) => JSON.parse(line) as Record<string, unknown>).filter((event) => event.check === check);
    await until(what, () => (of().some(matches) ? true : undefined), 30_000);
    show(`events of ${check} (mosquitto_sub outpost/v1/${demo.deviceId}/events, one line each):\n${of().map(eventLine).join('\n')}`);
    shown = events.length;
  };
  try {
    heading('Health: a required check fails; its exec remediation fixes it, and `outpost health` says so in its exit code');
    const section = healthSection(dir);
    await demo.configure(section);
    show(`D=${dir}; the checks' programs: $D/app-check (fails while $D/app.lock exists), $D/modem-check (fails while $D/modem.wedged exists)`);
    show(`the config gains a health section, taken up at a restart:\n${short(describe(section))}`);
    show((await healthWhen('the first verdicts', (r) => r.exitCode === 0)).text);
    // The first verdicts (unknown → passing) are not the story.
    events.length = 0;

    writeFileSync(lock, `${process.pid}\n`);
    show('$ echo $$ > $D/app.lock   (the app crashed and left its lock behind)');
    show((await healthWhen('app-lock failing', (r) => r.exitCode === 1)).text);
    await showEventsUntil('app-lock', 'app-lock passing again', (e) => e.type === 'health-check-changed' && e.to === 'passing');
    show((await health()).text);
    show(`$ ls $D/app.lock\n${existsSync(lock) ? '$D/app.lock' : "ls: cannot access '$D/app.lock': No such file or directory   (removed by the remediation)"}`);

    heading(`Health: a reboot that does not help — the reboot circuit breaker opens after ${maxReboots} remediation reboots`);
    writeFileSync(wedged, '');
    show(`$ touch $D/modem.wedged   (a fault the check's remediation, a reboot, is meant to clear; this one outlives reboots)`);
    for (let reboot = 1; reboot <= maxReboots; reboot++) {
      const output = await demo.exited();
      show(`… the daemon stopped: ${short(stopReason(output) ?? '(no reason logged)')}\n… the bootloader starts the default deployment`);
      await demo.boot();
    }
    const open = await healthWhen('the breaker to open', (r) => r.exitCode === 1 && r.text.includes('needs attention'));
    show(open.text);
    await showEventsUntil('modem', 'the needs-attention remediation', (e) => e.type === 'health-remediation' && e.outcome === 'needs-attention');
    const json = await health(['--json']);
    const report = JSON.parse(json.stdout) as Record<string, unknown>;
    show(short(`$ outpost health --json   (the API's GET /v1/health; here its status and rebootBreaker)\n${JSON.stringify({ status: report.status, rebootBreaker: report.rebootBreaker }, null, 2)}\nexit ${String(json.exitCode)}`));

    heading('Health: the operator fixes the fault and closes the breaker (`outpost health reset-breaker`)');
    rmSync(wedged);
    show('$ rm $D/modem.wedged');
    show((await healthWhen('modem passing', (r) => r.exitCode === 0)).text);
    await showEventsUntil('modem', 'modem passing again', (e) => e.type === 'health-check-changed' && e.to === 'passing');
    show(`(no attention asked for while every check passes; the breaker itself stays open until its window passes or a reset)\n$ outpost health reset-breaker\n${short((await device.cli(['health', 'reset-breaker'])).stdout)}`);
  } finally {
    watcher.kill('SIGTERM');
    await watcher;
  }
}

/** Why the daemon stopped, from its `stopping` log record. */
function stopReason(output: string): string | undefined {
  for (const line of output.split('\n').reverse()) {
    if (!line.includes('"msg":"stopping"')) continue;
    try {
      const signal = (JSON.parse(line) as { signal?: unknown }).signal;
      if (typeof signal === 'string') return signal;
    } catch {
      // Not a record of ours.
    }
  }
  return undefined;
}
