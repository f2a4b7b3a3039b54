/**
 * The configuration schema: one strict document, units in names, defaults for everything a
 * factory image should not have to spell out. Unknown keys are errors so typos never pass.
 */
import { z } from 'zod';

/** Device ids go into MQTT topic levels, so the wildcard and separator characters are excluded. */
const deviceId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit');

const filePath = z.string().min(1, 'must be a non-empty path');

const brokerSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^mqtts:\/\/[^/\s]+(:\d+)?\/?$/, 'must be an mqtts://host[:port] URL (mutual TLS is required)'),
    caFile: filePath,
    certFile: filePath,
    keyFile: filePath,
    keepaliveSec: z.number().int().min(5).max(3600).default(60),
    connectTimeoutMs: z.number().int().min(1000).max(300_000).default(15_000),
    reconnectMinMs: z.number().int().min(100).max(600_000).default(1_000),
    reconnectMaxMs: z.number().int().min(1_000).max(3_600_000).default(120_000),
    /**
     * How long the broker keeps this device's session (subscriptions, queued QoS 1 commands) while
     * it is offline. A week covers a long weekend without power; commands carry their own expiry.
     */
    sessionExpirySec: z.number().int().min(60).max(0xffff_fffe).default(7 * 24 * 3600),
  })
  .refine((b) => b.reconnectMaxMs >= b.reconnectMinMs, {
    message: 'must be at least reconnectMinMs',
    path: ['reconnectMaxMs'],
  });

const pathsSchema = z.strictObject({
  stateDir: filePath.default('/var/lib/outpost'),
  runDir: filePath.default('/run/outpost'),
});

const lifecycleSchema = z.strictObject({
  /** Upper bound for an orderly stop; systemd's TimeoutStopSec must be larger. */
  stopTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
});

const groupName = z.string().regex(/^[a-z_][a-z0-9_-]*\$?$/, 'must be a group name such as "outpost-admin"');

const apiSchema = z.strictObject({
  /**
   * Octal string so the file reads like chmod. With a group below (and the native addon, which
   * tells callers apart by SO_PEERCRED) the socket is 0666 and every request is checked instead.
   */
  socketMode: z.string().regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "0660"').default('0660'),
  /** Members may do everything root may (apply, install); root always may. */
  adminGroup: groupName.optional(),
  /** Members may query (status, update status) but change nothing. */
  readGroup: groupName.optional(),
});

const logSchema = z.strictObject({
  level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});

const httpUrl = z.string().regex(/^https?:\/\/[^\s]+$/, 'must be an http:// or https:// URL');

const bootSchema = z.strictObject({
  /** Which bootloader counts trial boots; `simulated` is for the demo and tests only. */
  backend: z.enum(['grub', 'uboot', 'simulated']).default('grub'),
  grubEnvFile: filePath.default('/boot/grub/grubenv'),
  fwEnvConfig: filePath.default('/etc/fw_env.config'),
  /** Boots a new release gets before the bootloader falls back on its own. */
  trialBoots: z.number().int().min(1).max(10).default(3),
  /** State file of the simulated bootloader (default <stateDir>/simulated-boot.json). */
  simulatedStateFile: filePath.optional(),
});

/**
 * A release whose trial boots the bootloader used up with no evidence against it (no watchdog
 * reset, no trial-guard reboot, no failed check: what power lost during the trial looks like) is
 * offered again after `backoffSec`, four times longer each further time, `trials` trials in all.
 */
const deferralSchema = z.strictObject({
  trials: z.number().int().min(1).max(10).default(3),
  backoffSec: z.number().int().min(1).max(7 * 86_400).default(600),
});

const probationCheckSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a short lower-case name'),
  /** argv of the check; exit status 0 passes. No shell. */
  command: z.array(z.string().min(1)).min(1),
  timeoutMs: z.number().int().min(100).max(600_000).default(10_000),
});

const probationSchema = z.strictObject({
  /** All checks must pass together within this long after the trial boot, else roll back. */
  windowSec: z.number().int().min(1).max(86_400).default(300),
  intervalSec: z.number().int().min(1).max(3600).default(5),
  /** Whether reaching the broker is part of health; off by default so an outage never rolls back. */
  requireBroker: z.boolean().default(false),
  checks: z.array(probationCheckSchema).max(32).default([]),
});

const updateSchema = z.strictObject({
  /** Base URL of the TUF repository (as outpostctl writes it): metadata at <server>/, files at <server>/targets/. */
  server: httpUrl,
  /** HTTP archive OSTree repository for the full-pull fallback. */
  ostreeUrl: httpUrl.optional(),
  /** The initial trusted TUF root, shipped in the image. */
  rootFile: filePath.default('/etc/outpost/root.json'),
  hardware: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -'),
  /** CPU architecture of this device's releases; defaults to the running one. */
  arch: z.enum(['aarch64', 'x86_64']).optional(),
  sysroot: filePath.default('/'),
  osname: z.string().min(1).default('outpost'),
  checkIntervalSec: z.number().int().min(1).max(7 * 86_400).default(3600),
  /** Bound on fetching one TUF metadata file, retries included: a trickling server cannot hold a check. */
  metadataDeadlineSec: z.number().int().min(1).max(3600).default(60),
  /** Bound on one whole check (every metadata file, root rotations included), so nothing waits on it for ever. */
  checkDeadlineSec: z.number().int().min(1).max(86_400).default(300),
  /** Cap on delta downloads. `ostree pull` (the full-pull fallback) has no rate limit in 2022.7. */
  bandwidthBytesPerSec: z.number().int().min(1024).optional(),
  /**
   * A delta request averaging less than this since it started, once past the grace period, is cut
   * off (transient; the part is kept for resume), so a trickle is not progress forever; 0 = off.
   * Time the bandwidth cap holds reading back does not count.
   */
  minDownloadBytesPerSec: z.number().int().min(0).default(1024),
  slowDownloadGraceSec: z.number().int().min(1).max(3600).default(30),
  /** Free space kept on top of a download for applying it into the repo. */
  applyHeadroomBytes: z.number().int().min(0).default(256 * 1024 * 1024),
  /**
   * Re-hash every object in the repo (`ostree fsck`) before deploying. Off by default: apply and
   * pull already verify each object they write, and 2022.7 cannot scope fsck to one commit, so it
   * reads the whole repo (47 s per update on the TCG gateway, minutes on eMMC).
   */
  fsckBeforeDeploy: z.boolean().default(false),
  deferral: deferralSchema.prefault({}),
  boot: bootSchema.prefault({}),
  probation: probationSchema.prefault({}),
});

const installerSchema = z.strictObject({
  /**
   * The installer's socket. Set: the agent reaches OSTree and the bootloader only through the
   * installer listening here (`outpost installer`, socket-activated by systemd); unset: the daemon
   * runs them itself and must be root.
   */
  socket: filePath.optional(),
  /** The installer's own state (its TUF store, checked before each deploy). */
  stateDir: filePath.default('/var/lib/outpost-installer'),
  /** Socket-activated, the installer exits after this long without a request (systemd starts it again); 0 never. */
  idleExitSec: z.number().int().min(0).max(86_400).default(60),
});

/**
 * Everything the device sends besides its retained state (command results, events, later log
 * batches) waits in the store until the broker acknowledged it. Bounded: when full, the lowest
 * priority and oldest go first, and how many went is reported.
 */
const outboxSchema = z.strictObject({
  maxBytes: z.number().int().min(64 * 1024).max(1024 * 1024 * 1024).default(16 * 1024 * 1024),
});

/**
 * A systemd unit name as `restart-service` and `logs` take it: a plain name with one of the unit
 * types a gateway service uses, no escapes, no template without its instance, nothing that could
 * read as an option (it starts with a letter or digit; systemctl also gets `--` before it).
 */
export const unitNameSchema = z
  .string()
  .max(255)
  .regex(/^[A-Za-z0-9][A-Za-z0-9@._-]*\.(service|socket|timer|target|path)$/, 'must be a unit name such as "mosquitto.service" (A-Z a-z 0-9 @ . _ -, ending in .service, .socket, .timer, .target or .path)');

/** Where the `logs` command reads: the daemon's own unit in the system journal. */
const commandLogsSchema = z.strictObject({
  /** The unit whose journal `logs` returns (`journalctl -u`). */
  unit: unitNameSchema.default('outpost.service'),
  /** Read the journal files of this directory instead of the system journal (`journalctl --directory`; tests). */
  journalDir: filePath.optional(),
});

/** A host name or address a reverse tunnel may go to: nothing ssh could read as an option. */
export const tunnelHostSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$/, 'must be a host name or address');

/**
 * Just-in-time SSH access (`grant-access`, `revoke-access`; docs/architecture.md "Remote access").
 * sshd must read `<keysDir>/%u` (the shipped drop-in systemd/outpost-access.sshd.conf). Each
 * principal is a local account used for nothing else: ending a grant's sessions ends every process
 * of that account.
 */
const accessSchema = z.strictObject({
  /** Local accounts a grant may name; root never. */
  principals: z
    .array(z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a local user name').refine((name) => name !== 'root', 'root is never granted'))
    .min(1)
    .max(32),
  /** One authorized-keys file per principal, written by outpost (by the installer when there is one); a directory of its own. */
  keysDir: z.string().regex(/^\/[^\0]*[^/]$/, 'must be an absolute directory path').refine((dir) => !['/etc', '/etc/ssh'].includes(dir), 'must be a directory of its own, such as /etc/ssh/outpost-keys').default('/etc/ssh/outpost-keys'),
  /** Longest grant; the installer holds entries to it too. */
  maxDurationSec: z.number().int().min(1).max(7 * 86_400).default(3600),
  /** The port of this device's sshd, where a reverse tunnel leads. */
  sshdPort: z.number().int().min(1).max(65_535).default(22),
  /**
   * Whether a grant may open a reverse SSH tunnel to a bastion of `tunnelHosts` (default true).
   * With no bastion listed they are off whatever this says: a config from before that list (when
   * `true` was the default and any host went) loads with tunnels off, rather than failing to load
   * and holding the device on its previous release.
   */
  tunnels: z.boolean().optional(),
  /**
   * The bastions a grant's tunnel may go to, compared with its `tunnel.host` as spelled (case
   * aside): without this list any issuer of `grant-access` could have the device connect, with its
   * own tunnel key, to any host. The port stays the command's: the bastion is the operator's.
   */
  tunnelHosts: z.array(tunnelHostSchema).max(32).default([]),
  /** The device's tunnel key (created on first use); default <stateDir>/access/tunnel-key. */
  tunnelKeyFile: filePath.optional(),
  /** How often the sessions of granted principals are looked at, for the access-login events. */
  loginPollSec: z.number().int().min(1).max(600).default(5),
})
  .transform((access) => ({ ...access, tunnels: access.tunnels !== false && access.tunnelHosts.length > 0 }));

/**
 * Signed remote commands (docs/protocol.md). Who may send what is in the signed update metadata,
 * so commands need the `update` and `broker` sections.
 */
const commandsSchema = z.strictObject({
  /** Groups this device answers for (envelopes addressed `{ "group": ... }`). */
  groups: z.array(deviceId).max(32).default([]),
  /** How far ahead of the device's clock a command's notBefore may be (clocks of devices without an RTC drift). */
  skewSec: z.number().int().min(0).max(3600).default(300),
  /**
   * Units `restart-service` may restart. The agent refuses others as bad args; the installer
   * checks its own copy (the image's config, never the agent's overlay) before it runs systemctl.
   */
  restartUnits: z.array(unitNameSchema).max(64).default([]),
  logs: commandLogsSchema.prefault({}),
  /** Just-in-time SSH access; absent: the commands are unknown to the device. */
  access: accessSchema.optional(),
});

const checkName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a short lower-case name');
const argv = z.array(z.string().min(1)).min(1);

/** What outpost does when a check has failed: each action at most once per backoff step. */
const remediationSchema = z.discriminatedUnion('action', [
  /** Through the installer when there is one; its own config must list the unit in a check's remediation too. */
  z.strictObject({ action: z.literal('restart-unit'), unit: unitNameSchema }),
  z.strictObject({ action: z.literal('exec'), command: argv, timeoutSec: z.number().int().min(1).max(3600).default(60) }),
  /** Stops outpost with a non-zero code so systemd starts it again. */
  z.strictObject({ action: z.literal('restart-outpost') }),
  /** Through the update path's reboot, under the reboot circuit breaker. */
  z.strictObject({ action: z.literal('reboot') }),
]);

/**
 * What every check has. A check fails after `failAfter` failing runs in a row and passes again
 * after `recoverAfter` passing runs in a row (flap damping); it never overlaps itself, and a run
 * past `timeoutSec` is abandoned (its process killed) and counts as failing.
 */
const checkCommon = {
  name: checkName,
  intervalSec: z.number().int().min(1).max(86_400).default(30),
  timeoutSec: z.number().int().min(1).max(3600).default(10),
  failAfter: z.number().int().min(1).max(100).default(3),
  recoverAfter: z.number().int().min(1).max(100).default(1),
  /** A failing required check makes the device `failed` (and fails probation); a wanted one `degraded`. */
  severity: z.enum(['required', 'wanted']).default('wanted'),
  remediation: remediationSchema.optional(),
};

const regexSource = z.string().max(1000).refine((source) => {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}, 'must be a valid regular expression');

/** One health check (docs/architecture.md "Health"); `kind` says what it looks at. */
export const healthCheckSchema = z.discriminatedUnion('kind', [
  /** argv, no shell; exit status 0 passes. */
  z.strictObject({ ...checkCommon, kind: z.literal('exec'), command: argv }),
  z.strictObject({
    ...checkCommon,
    kind: z.literal('http'),
    url: httpUrl,
    /** Status codes that pass. */
    status: z.array(z.number().int().min(100).max(599)).min(1).max(32).default([200]),
    /** A regular expression the body (its first 64 KiB) must match. */
    bodyMatch: regexSource.optional(),
  }),
  z.strictObject({ ...checkCommon, kind: z.literal('tcp'), host: z.string().min(1).max(253), port: z.number().int().min(1).max(65_535) }),
  /** Active, and not restarted by systemd more than `maxRestarts` times within `restartWindowSec`. */
  z.strictObject({
    ...checkCommon,
    kind: z.literal('unit'),
    unit: unitNameSchema,
    maxRestarts: z.number().int().min(0).max(1000).default(3),
    restartWindowSec: z.number().int().min(1).max(86_400).default(600),
  }),
  z
    .strictObject({
      ...checkCommon,
      kind: z.literal('disk'),
      path: filePath,
      minFreeBytes: z.number().int().min(0).optional(),
      minFreePercent: z.number().min(0).max(100).optional(),
      minFreeInodes: z.number().int().min(0).optional(),
    })
    .refine((c) => c.minFreeBytes !== undefined || c.minFreePercent !== undefined || c.minFreeInodes !== undefined, { message: 'needs minFreeBytes, minFreePercent or minFreeInodes', path: ['minFreeBytes'] }),
  z
    .strictObject({
      ...checkCommon,
      kind: z.literal('memory'),
      minAvailableBytes: z.number().int().min(0).optional(),
      /** PSI `memory` (/proc/pressure/memory) avg10 limits, in percent. */
      maxSomeAvg10: z.number().min(0).max(100).optional(),
      maxFullAvg10: z.number().min(0).max(100).optional(),
    })
    .refine((c) => c.minAvailableBytes !== undefined || c.maxSomeAvg10 !== undefined || c.maxFullAvg10 !== undefined, { message: 'needs minAvailableBytes, maxSomeAvg10 or maxFullAvg10', path: ['minAvailableBytes'] }),
  z
    .strictObject({
      ...checkCommon,
      kind: z.literal('cpu'),
      /** The cgroup v2 whose `cpu.stat` is measured: a unit's (its ControlGroup) or a path under the cgroup root. */
      unit: unitNameSchema.optional(),
      cgroup: z.string().regex(/^\/[^\0]*$/, 'must be a cgroup path such as /system.slice/app.service').optional(),
      /** The group's CPU time between two runs, in percent of one core. */
      maxPercent: z.number().min(0).max(100_000).optional(),
      /** Host PSI `cpu some` avg10, in percent. */
      maxSomeAvg10: z.number().min(0).max(100).optional(),
      /** Host 1-minute load average per online CPU. */
      maxLoadPerCpu: z.number().min(0).optional(),
    })
    .refine((c) => !(c.unit !== undefined && c.cgroup !== undefined), { message: 'takes unit or cgroup, not both', path: ['cgroup'] })
    .refine((c) => c.maxPercent === undefined || c.unit !== undefined || c.cgroup !== undefined, { message: 'maxPercent needs unit or cgroup', path: ['maxPercent'] })
    .refine((c) => c.maxPercent !== undefined || c.maxSomeAvg10 !== undefined || c.maxLoadPerCpu !== undefined, { message: 'needs maxPercent, maxSomeAvg10 or maxLoadPerCpu', path: ['maxPercent'] }),
  /** Thermal zones (/sys/class/thermal); passes where there are none. */
  z.strictObject({ ...checkCommon, kind: z.literal('temperature'), maxCelsius: z.number().min(-50).max(200), zones: z.array(z.string().min(1)).max(32).optional() }),
  /** The broker link is up, or was within `withinSec`. */
  z.strictObject({ ...checkCommon, kind: z.literal('mqtt'), withinSec: z.number().int().min(0).max(7 * 86_400).default(300) }),
]);

/** greenboot's layout: check/required.d and check/wanted.d are checks; green.d / red.d run after a commit / rollback. */
const greenbootSchema = z.strictObject({
  dir: filePath.default('/etc/greenboot'),
  intervalSec: z.number().int().min(1).max(86_400).default(300),
  timeoutSec: z.number().int().min(1).max(3600).default(60),
});

const healthSchema = z.strictObject({
  checks: z.array(healthCheckSchema).max(64).default([]),
  greenboot: greenbootSchema.prefault({}),
  /** Remediation of one check backs off from min to max, doubling each time it did not help. */
  backoffMinSec: z.number().int().min(1).max(86_400).default(30),
  backoffMaxSec: z.number().int().min(1).max(7 * 86_400).default(3600),
  /** At most `maxReboots` remediation reboots within `windowSec`; then outpost reports that it needs attention instead. */
  rebootBreaker: z.strictObject({ maxReboots: z.number().int().min(0).max(100).default(3), windowSec: z.number().int().min(60).max(30 * 86_400).default(86_400) }).prefault({}),
  /** cgroup v2 mount point, for `cpu` checks. */
  cgroupRoot: filePath.default('/sys/fs/cgroup'),
  /** WATCHDOG=1 (and the hardware watchdog) are withheld while the event loop lags more than this. */
  maxLoopLagMs: z.number().int().min(100).max(600_000).default(5_000),
  /** Pinged only while every part makes progress; closed with the magic character on a clean stop. */
  hardwareWatchdog: z.strictObject({ device: filePath.default('/dev/watchdog'), timeoutSec: z.number().int().min(10).max(3600).default(60) }).optional(),
})
  .refine((h) => h.backoffMaxSec >= h.backoffMinSec, { message: 'must be at least backoffMinSec', path: ['backoffMaxSec'] })
  .superRefine((h, ctx) => {
    const seen = new Set<string>();
    h.checks.forEach((check, index) => {
      if (seen.has(check.name)) ctx.addIssue({ code: 'custom', path: ['checks', index, 'name'], message: `${check.name} is used by an earlier check` });
      seen.add(check.name);
    });
  });

/** The whole configuration file. */
export const configSchema = z.strictObject({
  deviceId,
  broker: brokerSchema.optional(),
  paths: pathsSchema.prefault({}),
  lifecycle: lifecycleSchema.prefault({}),
  api: apiSchema.prefault({}),
  log: logSchema.prefault({}),
  update: updateSchema.optional(),
  installer: installerSchema.prefault({}),
  outbox: outboxSchema.prefault({}),
  commands: commandsSchema.optional(),
  health: healthSchema.prefault({}),
})
  .superRefine((config, ctx) => {
    config.health.checks.forEach((check, index) => {
      if (check.kind === 'mqtt' && !config.broker) ctx.addIssue({ code: 'custom', path: ['health', 'checks', index, 'kind'], message: 'an mqtt check needs the "broker" section: without a broker it could only fail' });
      if (check.remediation?.action === 'reboot' && !config.update) ctx.addIssue({ code: 'custom', path: ['health', 'checks', index, 'remediation', 'action'], message: 'reboot needs the "update" section: outpost reboots through the update path (and its installer)' });
    });
    if (!config.commands) return;
    for (const needed of ['broker', 'update'] as const) {
      if (config[needed] === undefined) ctx.addIssue({ code: 'custom', path: ['commands'], message: `needs the "${needed}" section: ${needed === 'broker' ? 'commands arrive through the broker' : 'who may send commands is part of the signed update metadata'}` });
    }
  });

/** The validated, defaulted configuration. Frozen once loaded; passed down, never imported. */
export type Config = Readonly<z.output<typeof configSchema>>;
/** Update settings, present when the device takes OTA updates. */
export type UpdateConfig = NonNullable<Config['update']>;
/** Health settings (always present, defaulted). */
export type HealthConfig = Config['health'];
/** One configured health check. */
export type HealthCheckConfig = HealthConfig['checks'][number];
/** Broker settings, present only when the device talks to a fleet broker. */
export type BrokerConfig = NonNullable<Config['broker']>;
