/**
 * Who is at the other end of a local socket connection (SO_PEERCRED and SO_PEERGROUPS through the
 * native addon), and group names as /etc/group has them: what the local API's access rules need.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { NativeLoad } from './native.js';

/** The process that connected: its ids and every group it is in. */
export interface Peer {
  pid: number;
  uid: number;
  gid: number;
  /** Primary and supplementary group ids. */
  groups: readonly number[];
}

/** The peer of a connection, or null when the kernel could not say (the connection is then refused). */
export type PeerLookup = (socket: Socket) => Peer | null;

/** Node keeps a unix socket's descriptor on its internal handle; nothing public exposes it. */
function descriptorOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** A lookup backed by the addon, or undefined without it (no peer can be told apart then). */
export function peerLookup(native: NativeLoad): PeerLookup | undefined {
  const { addon } = native;
  if (!addon) return undefined;
  return (socket) => {
    const fd = descriptorOf(socket);
    if (fd === undefined) return null;
    const result = addon.peerCredentials(fd);
    if (typeof result === 'number') return null;
    const [pid = -1, uid = -1, gid = -1, ...supplementary] = result;
    return { pid, uid, gid, groups: [gid, ...supplementary] };
  };
}

/** The id of group `name` in `file` (/etc/group), or undefined when there is none. */
export function groupId(name: string, file = '/etc/group'): number | undefined {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [group, , id] = line.split(':');
    if (group === name && id !== undefined && /^\d+$/.test(id)) return Number(id);
  }
  return undefined;
}
