/**
 * Per-scenario set-up shared by the system tests: the cached image, a fresh overlay, the test's
 * services and one log directory (serial console, broker log) that survives the test, so a
 * failure can be read afterwards: <cache>/logs/<scenario>/serial.log.
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { cacheRoot, ensureImage, repoRoot, type BuiltImage } from './image.js';
import { Vm, type VmOptions } from './vm.js';
import { createWorld, type SystemWorld } from './world.js';

/** What a scenario works with. */
export interface Scenario {
  readonly image: BuiltImage;
  readonly world: SystemWorld;
  readonly vm: Vm;
  readonly dir: string;
  /** Stops the VM and the services; keeps the logs, and the disk overlay only if the test failed. */
  close(): Promise<void>;
}

/** Minimal view of a tap Test, so this module does not depend on tap's types. */
export interface TestLike {
  comment(...args: unknown[]): void;
  teardown(fn: () => unknown): void;
  /** False once the test has failed. */
  passing(): boolean;
}

/** Sets up scenario `name`; everything is torn down with the test. */
export async function scenario(t: TestLike, name: string, vmOptions: Partial<VmOptions> = {}): Promise<Scenario> {
  const image = await ensureImage((l) => t.comment(l));
  const dir = join(process.env.OUTPOST_SYSTEM_LOGS ?? join(cacheRoot(), 'logs'), name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const world = await createWorld(image, dir);
  const vm = new Vm({ dir, base: image.disk, httpPort: world.server.port, brokerPort: world.broker.port, ...vmOptions });
  await vm.create();
  t.comment(`serial log: ${vm.serialLog}`);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await vm.stop();
    await world.close();
    // A disk the test left broken (bricked, half-updated) is the evidence: keep it to inspect.
    if (t.passing()) await rm(vm.overlay, { force: true });
    else t.comment(`test failed: disk overlay kept at ${vm.overlay} (backing file ${image.disk})`);
  };
  t.teardown(close);
  return { image, world, vm, dir, close };
}

/** `outpost update status --json` in the guest. */
export async function updateStatus(vm: Vm): Promise<Record<string, unknown> & { state: string; installedVersion: number; reason: string | null; last: unknown }> {
  // Short timeout: a request sent while the guest reboots is never answered.
  return JSON.parse(await vm.sh('outpost update status --json', 20_000)) as never;
}

/** Polls `fn` until it returns a value that is not undefined, or throws after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, everyMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timeout (${timeoutMs} ms) waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Which release the guest runs (the image's /usr/lib/rig/release). */
export async function bootedRelease(vm: Vm): Promise<number> {
  return Number((await vm.sh('cat /usr/lib/rig/release')).trim());
}

/**
 * Merges `data` into bench/results/system.json under `section`. Scenario files run side by side,
 * so the read-modify-write holds a lock directory (mkdir is atomic); a stale lock older than a
 * minute (a killed run) is broken.
 */
export async function recordResult(section: string, data: unknown): Promise<void> {
  const file = join(repoRoot, 'bench', 'results', 'system.json');
  const lock = `${file}.lock`;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > 60_000) await rm(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    const all: Record<string, unknown> = existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>) : {};
    all[section] = { ...(data as object), recordedAt: new Date().toISOString() };
    await writeFile(`${file}.tmp`, `${JSON.stringify(all, null, 2)}\n`);
    await rename(`${file}.tmp`, file);
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** Waits for the guest agent of the next boot after serial offset `since` (a reboot finished). */
export async function nextBoot(vm: Vm, since: number, timeoutMs = 400_000): Promise<void> {
  await vm.waitSerial(/RIG-AGENT-READY/, { since, timeoutMs });
}

/** Waits until the update machine is idle again and resolves to its status (`last` = outcome). */
export async function settled(vm: Vm, timeoutMs = 300_000): Promise<Awaited<ReturnType<typeof updateStatus>>> {
  return until('update idle', async () => {
    const s = await updateStatus(vm);
    return s.state === 'idle' ? s : undefined;
  }, timeoutMs, 2000);
}

/** `ostree admin status` in the guest. */
export function ostreeStatus(vm: Vm): Promise<string> {
  return vm.sh('ostree admin status');
}

/**
 * Starts the newest release (`outpost update apply`). The daemon also checks by itself 5 s after
 * it starts; if that check already began the update, "already in progress" is success too.
 */
export async function startUpdate(vm: Vm): Promise<string> {
  await outpostReady(vm);
  const r = await vm.exec('outpost update apply', 120_000);
  if (r.rc !== 0 && !/already in progress/.test(r.out)) throw new Error(`outpost update apply failed (${r.rc}): ${r.out}`);
  return r.out;
}

/** Waits until outpost.service is active (READY=1 sent) and its API socket exists. */
export async function outpostReady(vm: Vm, timeoutMs = 180_000): Promise<void> {
  await until('outpost ready', async () => ((await vm.exec('systemctl is-active -q outpost && test -S /run/outpost/api.sock', 20_000)).rc === 0 ? true : undefined), timeoutMs, 1000);
}
