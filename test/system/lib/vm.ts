/**
 * One virtual gateway: qemu (KVM when it works, else TCG) on a qcow2 overlay of the cached image,
 * serial console appended to one log per test, a guest agent on a virtio-serial port for
 * commands, swtpm as TPM 2.0, the i6300esb watchdog, and user networking with `restrict=on` whose
 * only exits are guestfwds to the test's HTTP server and broker (both on loopback in the test's
 * network namespace) and whose only way in, if asked, is a hostfwd to the guest's sshd.
 *
 * Invariants: every qemu and swtpm this module starts is killed by `stop()`/`powerCut()`; a
 * request to the agent either gets its reply or times out (a guest that reboots never answers).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { guest } from './image.js';

/** Options of a VM. */
export interface VmOptions {
  /** Directory for the overlay, sockets, TPM state and the serial log. */
  dir: string;
  /** Cached base image (qcow2); the VM writes only to its own overlay. */
  base: string;
  /** Host ports (in the test's netns) the guest's forwards lead to. */
  httpPort?: number;
  brokerPort?: number;
  /** Loopback port on the host forwarded to the guest's sshd (port 22), for logins from outside. */
  sshPort?: number;
  /** Extra raw/qcow2 disk (e.g. a "USB stick" with an offline bundle) as a second virtio disk. */
  extraDisk?: string;
  memMb?: number;
  /** vCPUs; default $OUTPOST_SYSTEM_SMP or 2. run.sh runs two VMs side by side with 1 each. */
  smp?: number;
}

/**
 * `tcg` unless OUTPOST_SYSTEM_ACCEL=kvm. Not auto-detected: on the CI machines /dev/kvm opens and
 * qemu starts, but the guest kernel hangs before its first console line (nested virtualization),
 * so "KVM works" can only be known by booting. Opt in where it is known good.
 */
export async function accel(): Promise<string> {
  return process.env.OUTPOST_SYSTEM_ACCEL === 'kvm' ? 'kvm' : 'tcg';
}

/** A running or stopped VM; `start()` again boots the same disk (after a power cut, too). */
export class Vm {
  readonly serialLog: string;
  readonly overlay: string;
  private qemu: ChildProcess | undefined;
  private swtpm: ChildProcess | undefined;
  private agent: Socket | undefined;
  private agentBuf = '';
  private nextId = 1;
  private readonly pending = new Map<string, (reply: { rc: number; out: string }) => void>();
  /** Serial offset where the latest start() began: "this boot's output" starts here. */
  bootMark = 0;
  /** Wall time of each start() → first RIG-AGENT-READY, for bench results. */
  readonly bootTimesMs: number[] = [];

  constructor(private readonly options: VmOptions) {
    this.serialLog = join(options.dir, 'serial.log');
    this.overlay = join(options.dir, 'disk.qcow2');
  }

  /** Creates the copy-on-write overlay: every scenario starts from the same pristine image. */
  async create(): Promise<void> {
    await mkdir(join(this.options.dir, 'tpm'), { recursive: true });
    await rm(this.overlay, { force: true });
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', this.options.base, '-F', 'qcow2', this.overlay]);
  }

  get running(): boolean {
    return this.qemu !== undefined && this.qemu.exitCode === null && this.qemu.signalCode === null;
  }

  /** Byte offset of the serial log now: pass it to waitSerial to look only at what comes later. */
  async mark(): Promise<number> {
    return existsSync(this.serialLog) ? (await stat(this.serialLog)).size : 0;
  }

  /** The serial log from `since` on. */
  async serial(since = 0): Promise<string> {
    if (!existsSync(this.serialLog)) return '';
    const fh = await open(this.serialLog, 'r');
    try {
      const size = (await fh.stat()).size;
      const buf = Buffer.alloc(Math.max(0, size - since));
      await fh.read(buf, 0, buf.length, since);
      return buf.toString('latin1');
    } finally {
      await fh.close();
    }
  }

  /** Waits until `re` appears in the serial log after `since`; rejects on timeout or qemu exit (unless allowed). */
  async waitSerial(re: RegExp, options: { since?: number; timeoutMs?: number; allowExit?: boolean } = {}): Promise<RegExpMatchArray> {
    const deadline = Date.now() + (options.timeoutMs ?? 300_000);
    for (;;) {
      const m = (await this.serial(options.since ?? 0)).match(re);
      if (m) return m;
      if (!this.running && options.allowExit !== true) throw new Error(`qemu exited while waiting for ${re} (serial: ${this.serialLog})`);
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${re} (serial: ${this.serialLog})`);
      await sleep(250);
    }
  }

  private async startSwtpm(): Promise<string> {
    const tpm = join(this.options.dir, 'tpm');
    const sock = join(tpm, 'swtpm.sock');
    await rm(sock, { force: true });
    // Absolute paths only: swtpm may chdir. Unix socket only, no TCP.
    this.swtpm = spawn('swtpm', ['socket', '--tpm2', '--tpmstate', `dir=${tpm}`, '--ctrl', `type=unixio,path=${sock}`, '--log', `file=${join(tpm, 'log')}`], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(50);
    return sock;
  }

  /** Boots the VM (qemu + swtpm) and resolves once the guest agent reported ready. */
  async start(options: { waitReady?: boolean; timeoutMs?: number } = {}): Promise<void> {
    if (this.running) throw new Error('VM already running');
    const since = await this.mark();
    this.bootMark = since;
    const t0 = performance.now();
    const tpmSock = await this.startSwtpm();
    const agentSock = join(this.options.dir, 'agent.sock');
    await rm(agentSock, { force: true });
    const fwd: string[] = [];
    if (this.options.httpPort !== undefined) fwd.push(`guestfwd=tcp:${guest.httpAddr}-cmd:socat - TCP:127.0.0.1:${this.options.httpPort}`);
    if (this.options.brokerPort !== undefined) fwd.push(`guestfwd=tcp:${guest.brokerAddr}-cmd:socat - TCP:127.0.0.1:${this.options.brokerPort}`);
    // restrict=on leaves explicit forwarding rules working: this one lets the host in, not the guest out.
    if (this.options.sshPort !== undefined) fwd.push(`hostfwd=tcp:127.0.0.1:${this.options.sshPort}-:22`);
    const a = await accel();
    const args = [
      '-accel', a === 'kvm' ? 'kvm' : 'tcg,thread=multi', '-cpu', a === 'kvm' ? 'host' : 'max', '-smp', String(this.options.smp ?? Number(process.env.OUTPOST_SYSTEM_SMP ?? 2)), '-m', String(this.options.memMb ?? 1024),
      '-display', 'none', '-vga', 'none', '-monitor', 'none',
      '-drive', `file=${this.overlay},format=qcow2,if=virtio,cache=writeback`,
      '-chardev', `file,id=ser0,path=${this.serialLog},append=on`, '-serial', 'chardev:ser0',
      '-device', 'virtio-serial-pci', '-chardev', `socket,id=agent,path=${agentSock},server=on,wait=off`,
      '-device', 'virtserialport,chardev=agent,name=rig.agent',
      '-netdev', ['user', 'id=n0', 'restrict=on', ...fwd].join(','), '-device', 'virtio-net-pci,netdev=n0',
      '-device', 'i6300esb', '-action', 'watchdog=reset',
      '-chardev', `socket,id=chrtpm,path=${tpmSock}`, '-tpmdev', 'emulator,id=tpm0,chardev=chrtpm', '-device', 'tpm-tis,tpmdev=tpm0',
    ];
    if (this.options.extraDisk !== undefined) args.push('-drive', `file=${this.options.extraDisk},format=raw,if=virtio,readonly=on`);
    this.qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    this.qemu.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    this.qemu.once('exit', () => this.dropAgent());
    for (let i = 0; i < 100 && !existsSync(agentSock); i++) {
      if (!this.running) throw new Error(`qemu failed to start: ${stderr}`);
      await sleep(50);
    }
    await this.connectAgent(agentSock);
    if (options.waitReady !== false) {
      await this.waitSerial(/RIG-AGENT-READY/, { since, timeoutMs: options.timeoutMs ?? 300_000 });
      this.bootTimesMs.push(Math.round(performance.now() - t0));
    }
  }

  private connectAgent(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = connect(path);
      sock.once('connect', () => {
        this.agent = sock;
        resolve();
      });
      sock.once('error', reject);
      sock.on('data', (d: Buffer) => this.onAgentData(d.toString('latin1')));
    });
  }

  private onAgentData(text: string): void {
    this.agentBuf += text;
    let nl: number;
    while ((nl = this.agentBuf.indexOf('\n')) >= 0) {
      const line = this.agentBuf.slice(0, nl);
      this.agentBuf = this.agentBuf.slice(nl + 1);
      const m = /^RIGR (\S+) (\d+) ?(\S*)$/.exec(line.trim());
      if (!m) continue;
      this.pending.get(m[1] ?? '')?.({ rc: Number(m[2]), out: Buffer.from(m[3] ?? '', 'base64').toString('utf8') });
    }
  }

  private dropAgent(): void {
    this.agent?.destroy();
    this.agent = undefined;
    this.agentBuf = '';
  }

  /** Runs a bash script in the guest as root; resolves with its exit status and output. */
  async exec(script: string, timeoutMs = 120_000): Promise<{ rc: number; out: string }> {
    if (this.agent === undefined) throw new Error('no agent connection (VM not running)');
    const id = `r${this.nextId++}`;
    const reply = new Promise<{ rc: number; out: string }>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`guest command timed out after ${timeoutMs} ms: ${script.slice(0, 80)}`));
      }, timeoutMs);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(r);
      });
    });
    this.agent.write(`${id} ${Buffer.from(script).toString('base64')}\n`);
    return reply;
  }

  /** Like exec, but rejects unless the script exits 0; resolves to its output. */
  async sh(script: string, timeoutMs?: number): Promise<string> {
    const r = await this.exec(script, timeoutMs);
    if (r.rc !== 0) throw new Error(`guest command failed (${r.rc}): ${script.slice(0, 120)}\n${r.out}`);
    return r.out;
  }

  /** Fires a command that is expected to end the connection (reboot, crash): no reply awaited. */
  fire(script: string): void {
    this.agent?.write(`f${this.nextId++} ${Buffer.from(script).toString('base64')}\n`);
  }

  /** Power cut: SIGKILL qemu (no guest shutdown, nothing flushed that qemu had not written yet). */
  async powerCut(): Promise<void> {
    await this.kill('SIGKILL');
  }

  private async kill(signal: NodeJS.Signals): Promise<void> {
    const q = this.qemu;
    if (q !== undefined && q.exitCode === null && q.signalCode === null) {
      const exited = new Promise((r) => q.once('exit', r));
      q.kill(signal);
      await exited;
    }
    this.dropAgent();
    const t = this.swtpm;
    if (t !== undefined && t.exitCode === null && t.signalCode === null) {
      const exited = new Promise((r) => t.once('exit', r));
      t.kill('SIGTERM');
      await exited;
    }
    this.qemu = undefined;
    this.swtpm = undefined;
  }

  /** Stops the VM for good (no clean guest shutdown needed: the overlay is thrown away). */
  async stop(): Promise<void> {
    await this.kill('SIGKILL');
  }
}
