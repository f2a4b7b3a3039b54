/**
 * Who may use the local API: root, the daemon's own user and the admin group may do everything,
 * the read group may only query (GET). Decided per request from the caller's kernel-reported credentials, never from
 * anything the caller sends.
 */
import type { Peer } from '../platform/index.js';

/** A group from the config, resolved to its id at start. */
export interface AccessGroup {
  name: string;
  gid: number;
}

/** Null when `peer` may send `method`, else why not (the API's 403 message). */
export type AccessRule = (peer: Peer, method: string) => string | null;

/** The rule for the configured groups (either may be absent: then only root has that right). */
export function apiAccess(groups: { admin?: AccessGroup; read?: AccessGroup }): AccessRule {
  const member = (peer: Peer, group?: AccessGroup) => group !== undefined && peer.groups.includes(group.gid);
  return (peer, method) => {
    if (peer.uid === 0 || peer.uid === process.getuid?.() || member(peer, groups.admin)) return null;
    if (method === 'GET' && member(peer, groups.read)) return null;
    const may = method === 'GET' ? [groups.admin, groups.read] : [groups.admin];
    const who = ['root', ...may.filter((g) => g !== undefined).map((g) => `group ${g.name}`)].join(' or ');
    return `uid ${peer.uid} (pid ${peer.pid}) may not ${method === 'GET' ? 'query' : 'change'} outpost: that takes ${who}`;
  };
}
