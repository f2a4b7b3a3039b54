/** Platform: adapters to the host (service manager notification, hardware watchdog, native addon). */
export { errnoError, errnoName } from './errno.js';
export { openHardwareWatchdog, type HardwareWatchdog } from './hardware-watchdog.js';
export { loadNative, type NativeLoad, type OutpostNative } from './native.js';
export {
  createNotifier,
  formatNotifyFields,
  watchdogIntervalMs,
  type Notifier,
  type NotifierOptions,
  type NotifyMechanism,
} from './notify.js';
export { createExec, defaultExecTimeoutMs, stderrTail, type CreateExecOptions, type Exec, type ExecOptions, type ExecResult } from './exec.js';
export { writeFileAtomic, syncDir, type AtomicWriteOptions } from './atomic-write.js';
export { monotonicMs, systemClock, type Clock } from './clock.js';
export { kernelBootId } from './boot-id.js';
export { peerLookup, groupId, type Peer, type PeerLookup } from './peer.js';
