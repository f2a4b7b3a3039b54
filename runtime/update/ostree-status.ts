/**
 * Parses `ostree admin status` (ostree 2022.7 has no `--json`) into deployments and marks their
 * roles relative to the "current" one.
 *
 * The text format, from ot-admin-builtin-status.c (2022.7 and 2023.8 alike):
 *   `<* or space> <osname> <checksum>.<serial>[ (staged)| (pending)| (rollback)]`
 * followed by indented detail lines (`Version:`, `Pinned: yes`, `origin refspec:`, `Unlocked:`,
 * `GPG:` ...). Deployments are printed in boot order: index 0 is the default entry, and the index
 * is what `ostree admin undeploy`/`pin` take. Unknown detail lines are ignored, so additions in
 * later ostree releases do not break parsing; an unrecognised header is an error.
 *
 * ostree itself marks pending/rollback only on a booted system. Outpost needs the same roles in a
 * temp sysroot (tests, demo), so roles are derived here from a "current" deployment: the booted
 * one if ostree says so, else the one the caller names (the simulated boot adapter), else the
 * default. Pending = first deployment of the OS before current, rollback = first after it — the
 * definition of ostree_sysroot_query_deployments_for().
 */
import { OutpostError } from '../errors.js';

/** One deployment as `ostree admin status` lists it, with its role relative to the current one. */
export interface Deployment {
  /** Position in boot order (0 = default); the INDEX ostree's undeploy/pin take. */
  readonly index: number;
  readonly osname: string;
  readonly commit: string;
  /** Deploy serial: several deployments of one commit differ by it. */
  readonly serial: number;
  /** Booted per ostree, or per the caller's hint when ostree sees no booted deployment. */
  readonly booted: boolean;
  /** The running (or, in a never-booted sysroot, the default) deployment of this OS. */
  readonly current: boolean;
  /** The first deployment of this OS ordered before current: what the next boot starts. */
  readonly pending: boolean;
  /** The first deployment of this OS ordered after current: what a fallback boot starts. */
  readonly rollback: boolean;
  /** Index 0: the bootloader's default entry. */
  readonly isDefault: boolean;
  readonly staged: boolean;
  readonly pinned: boolean;
  /** The commit's `version` metadata, when set. */
  readonly version: string | null;
  readonly origin: string | null;
}

/** A deployment named by commit (and serial when several share the commit). */
export interface DeploymentRef {
  commit: string;
  serial?: number;
}

interface RawDeployment {
  index: number;
  osname: string;
  commit: string;
  serial: number;
  starred: boolean;
  staged: boolean;
  pinned: boolean;
  version: string | null;
  origin: string | null;
}

const header = /^([* ]) (\S+) ([0-9a-f]{64})\.(\d+)(?: \((staged|pending|rollback)\))?\s*$/;

/** Splits `ostree admin status` output into deployments in boot order, before roles are assigned. */
function parseRaw(text: string): RawDeployment[] {
  const out: RawDeployment[] = [];
  const lines = text.split('\n');
  let last: RawDeployment | undefined;
  for (const line of lines) {
    if (line.trim() === '' || line.trim() === 'No deployments.') continue;
    const m = header.exec(line);
    if (m) {
      last = {
        index: out.length,
        starred: m[1] === '*',
        osname: m[2] ?? '',
        commit: m[3] ?? '',
        serial: Number(m[4]),
        staged: m[5] === 'staged',
        pinned: false,
        version: null,
        origin: null,
      };
      out.push(last);
      continue;
    }
    if (last === undefined || !/^\s{2,}\S/.test(line)) {
      throw new OutpostError('OSTREE_FAILED', `unrecognised line in \`ostree admin status\` output: ${JSON.stringify(line)}`);
    }
    const detail = line.trim();
    if (detail.startsWith('Version: ')) last.version = detail.slice('Version: '.length);
    else if (detail === 'Pinned: yes') last.pinned = true;
    else if (detail.startsWith('origin refspec: ')) last.origin = detail.slice('origin refspec: '.length);
  }
  return out;
}

/**
 * Parses `ostree admin status` output for `osname`. `hint` names the deployment to treat as
 * booted when ostree reports none (ignored when ostree does report one).
 */
export function parseAdminStatus(text: string, osname: string, hint: DeploymentRef | null = null): Deployment[] {
  const raw = parseRaw(text);
  const ours = raw.filter((d) => d.osname === osname);
  const matches = (d: RawDeployment, ref: DeploymentRef): boolean =>
    d.commit === ref.commit && (ref.serial === undefined || d.serial === ref.serial);
  const starred = ours.find((d) => d.starred);
  const hinted = starred === undefined && hint !== null ? ours.find((d) => matches(d, hint)) : undefined;
  const booted = starred ?? hinted;
  const current = booted ?? ours[0];
  const pos = current === undefined ? -1 : ours.indexOf(current);
  const pending = pos > 0 ? ours[0] : undefined;
  const rollback = pos >= 0 ? ours[pos + 1] : undefined;
  return raw.map((d) => ({
    index: d.index,
    osname: d.osname,
    commit: d.commit,
    serial: d.serial,
    booted: d === booted,
    current: d === current,
    pending: d === pending,
    rollback: d === rollback,
    isDefault: d.index === 0,
    staged: d.staged,
    pinned: d.pinned,
    version: d.version,
    origin: d.origin,
  }));
}
