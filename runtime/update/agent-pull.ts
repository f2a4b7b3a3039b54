/**
 * The full-pull fallback for an agent without root: the agent fetches the commit over the network
 * into an archive repository of its own in its state dir, and the installer, which has no network,
 * pulls it from there as an untrusted local source (re-hashing every object). What crosses the
 * boundary is a file URL the installer checks is inside the agent's state dir.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from '../logs/index.js';
import type { Exec } from '../platform/index.js';
import { createOstree } from './ostree.js';

/** The agent's pull repository: emptied whenever the machine is idle (service.ts). */
export const agentPullRepo = (stateDir: string): string => join(stateDir, 'pull-repo');

/** Pulls `commit` from `remoteUrl` into the agent's own repository; resolves to that repository's file URL. */
export async function pullForInstaller(options: { exec: Exec; log: Logger; stateDir: string; osname: string }, remoteUrl: string, commit: string): Promise<string> {
  const repo = agentPullRepo(options.stateDir);
  // Created by the first pull, kept across restarts so an interrupted pull resumes object by object.
  if (!(await access(join(repo, 'config')).then(() => true, () => false))) await options.exec.run('ostree', ['init', `--repo=${repo}`, '--mode=archive']);
  await createOstree({ exec: options.exec, log: options.log, sysroot: options.stateDir, repo, osname: options.osname }).pull(remoteUrl, commit);
  return pathToFileURL(repo).href;
}
