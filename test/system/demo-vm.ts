/**
 * `npm run demo:vm`: the real thing for a newcomer. Boots the virtual gateway (GRUB, OSTree,
 * systemd, outpost), releases v2 from the host with outpostctl, follows the device through
 * download, deploy, reboot, trial and commit, then releases a bad v3 and watches it roll back.
 * Runs inside the network namespace run.sh makes; the serial console is in the printed log.
 */
import { bootedRelease, ostreeStatus, scenario, updateStatus, type TestLike, startUpdate } from './lib/scenario.js';

const say = (line: string) => console.log(`\n== ${line}`);
const teardowns: (() => unknown)[] = [];
let finished = false;
const t: TestLike = { comment: (...a: unknown[]) => console.log(`   ${a.join(' ')}`), teardown: (fn) => teardowns.push(fn), passing: () => finished };

async function follow(vm: import('./lib/vm.js').Vm, until: (s: Awaited<ReturnType<typeof updateStatus>>) => boolean): Promise<void> {
  let last = '';
  for (;;) {
    const s = await updateStatus(vm).catch(() => null);
    const line = s ? `state=${s.state}${s.reason ? ` reason="${s.reason}"` : ''}${s.last ? ` last=${JSON.stringify(s.last)}` : ''}` : '(device rebooting)';
    if (line !== last) console.log(`   device: ${line}`);
    last = line;
    if (s && until(s)) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

try {
  say('building or finding the cached gateway image, starting the host services');
  const { vm, world } = await scenario(t, 'demo-vm');
  say('booting the virtual gateway (qemu, GRUB, OSTree, systemd)');
  await vm.start();
  console.log(`   ${(await vm.serial(0)).match(/RIG-BOOTED[^\n]*/)?.[0] ?? ''}`);
  console.log(`   release running: ${await bootedRelease(vm)}`);
  say('host: outpostctl release add v2 (signed TUF metadata + static delta from v1)');
  await world.release(2, [1]);
  say('device: outpost update apply -> download, apply, deploy, reboot into a GRUB trial, probation, commit');
  await startUpdate(vm);
  await follow(vm, (s) => s.state === 'idle' && (s.last as { version?: number } | null)?.version === 2);
  console.log(`   release running: ${await bootedRelease(vm)}\n${(await ostreeStatus(vm)).replace(/^/gm, '   ')}`);
  say('host: release a bad v3 (its health check fails on the device)');
  await world.release(3, [2]);
  await startUpdate(vm);
  await follow(vm, (s) => s.state === 'idle' && (s.last as { version?: number } | null)?.version === 3);
  console.log(`   release running: ${await bootedRelease(vm)}\n${(await ostreeStatus(vm)).replace(/^/gm, '   ')}`);
  say(`done; the whole serial console is in ${vm.serialLog}`);
  finished = true;
} finally {
  for (const fn of teardowns.reverse()) await fn();
}
