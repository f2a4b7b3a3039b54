/**
 * The daemon's remote-command parts (loaded only when the config has a `commands` section, so a
 * device without them carries none of this code): the command service with its handlers, sending
 * through the daemon's outbox (outbox-wiring.ts). Who may send commands comes from the signed
 * update metadata: the stored copy at start, then every refresh.
 */
import { join } from 'node:path';
import { overlayFileName, type Config } from '../config/index.js';
import type { Service } from '../lifecycle/index.js';
import type { Link } from '../link/index.js';
import type { Logger } from '../logs/index.js';
import type { Store } from '../store/index.js';
import type { UpdateService } from '../update/index.js';
import type { TrustedTargets } from '../update/tuf/index.js';
import { CommandService, emptyIssuers, issuersFromTargets, type CommandHandler, type CommandStep, type InboundMessage, type IssuerSet } from '../commands/index.js';
import { diagnosticsHandler } from '../commands/handlers/diagnostics.js';
import { rebootHandler } from '../commands/handlers/reboot.js';
import { updateCheckHandler } from '../commands/handlers/update-check.js';
import { restartServiceHandler } from '../commands/handlers/restart-service.js';
import { setConfigHandler } from '../commands/handlers/set-config.js';
import { lazyHandler } from '../commands/handlers/lazy.js';
import { logsSpec } from '../commands/handlers/logs-spec.js';
import { unitControl } from './unit-control.js';
import type { AccessService } from '../access/index.js';
import type { Exec } from '../platform/index.js';
import type { OutboxWiring } from './outbox-wiring.js';

/** What the wiring needs from the daemon. */
export interface CommandWiringOptions {
  readonly config: Config & { commands: NonNullable<Config['commands']> };
  readonly store: () => Store;
  readonly link: Link;
  /** Where results and the commands' events go. */
  readonly outbox: Pick<OutboxWiring, 'outbox' | 'stats'>;
  readonly update: UpdateService;
  readonly log: Logger;
  readonly versions: () => Record<string, string | null>;
  readonly exec: Exec;
  /** Loads the config as the next start will, with `overlayDocument` as the overlay (set-config's check); throws CONFIG_INVALID. */
  readonly loadConfig: (overlayDocument: Readonly<Record<string, unknown>>) => Config;
  /** Stops the daemon for systemd to start it again (set-config). */
  readonly restart: (reason: string) => void;
  readonly onStep?: (step: CommandStep, id: string | undefined) => void;
}

/** The services and the link's inbox. */
export interface CommandWiring {
  /** Start after the outbox opens and before the link, so the first delivered command finds them running. */
  readonly beforeLink: Service[];
  /** Hands a delivered message to the command service; rejects until it runs. */
  receive(message: InboundMessage): Promise<void>;
  /** For the update service: every verified refresh may change who may send commands. */
  onTrusted(targets: TrustedTargets): void;
}

export async function commandWiring(options: CommandWiringOptions): Promise<CommandWiring> {
  const { config, link, update, log } = options;
  const requireOutbox = options.outbox.outbox;
  let issuers: IssuerSet = emptyIssuers;
  let floor: Date | undefined;
  const trust = (targets: TrustedTargets, source: string): void => {
    floor = targets.referenceTime;
    const parsed = issuersFromTargets(targets);
    if (!parsed.ok) {
      log.error('the command issuers in the signed metadata are unusable; the previous list stays', { source, reason: parsed.reason });
      return;
    }
    if (parsed.issuers.size !== issuers.size || source === 'store') log.info('command issuers trusted', { source, issuers: parsed.issuers.size });
    issuers = parsed.issuers;
  };
  const socket = config.installer.socket;
  const units = unitControl(socket, options.exec);

  // Just-in-time access: what needs root goes through the installer when there is one. Its code is
  // loaded only when configured, and then at start: the service ends at their expiry the grants a
  // previous run stored, and makes the key files hold exactly the active grants.
  const accessSection = config.commands.access;
  let access: AccessService | undefined;
  const accessHandlers: [string, CommandHandler][] = [];
  if (accessSection) {
    const [{ AccessService, accessSettings, localAccessHost }, { remoteAccessHost }, { grantAccessHandler }, { revokeAccessHandler }] = await Promise.all([
      import('../access/index.js'),
      import('../installer/client.js'),
      import('../commands/handlers/grant-access.js'),
      import('../commands/handlers/revoke-access.js'),
    ]);
    const service = new AccessService({
      settings: accessSettings(accessSection, config.paths.stateDir),
      deviceId: config.deviceId,
      store: options.store,
      outbox: requireOutbox,
      host: socket ? remoteAccessHost(socket) : localAccessHost({ keysDir: accessSection.keysDir, principals: accessSection.principals, maxDurationSec: accessSection.maxDurationSec, log: log.child('access') }),
      exec: options.exec,
      log: log.child('access'),
    });
    access = service;
    accessHandlers.push(['grant-access', grantAccessHandler(service.settings, () => service) as CommandHandler], ['revoke-access', revokeAccessHandler(() => service) as CommandHandler]);
  }

  const handlers = new Map<string, CommandHandler>([
    ['diagnostics', diagnosticsHandler({ stateDir: config.paths.stateDir, versions: options.versions, link: () => ({ ...link.status }), outbox: options.outbox.stats, update: () => update.status() })],
    ['update-check', updateCheckHandler(() => update.check())],
    ['reboot', rebootHandler((reason) => update.reboot(reason), (err) => log.error('the reboot a command asked for failed', { err }))],
    ...accessHandlers,
    ['restart-service', restartServiceHandler(config.commands.restartUnits, units)],
    ['set-config', setConfigHandler({ overlayFile: join(config.paths.stateDir, overlayFileName), check: (overlay) => void options.loadConfig(overlay), restart: options.restart })],
    ['logs', lazyHandler(logsSpec, async () => (await import('../commands/handlers/logs.js')).logsHandler({ exec: options.exec, unit: config.commands.logs.unit, ...(config.commands.logs.journalDir === undefined ? {} : { journalDir: config.commands.logs.journalDir }) }))],
  ] as [string, CommandHandler][]);

  const commands = new CommandService({
    deviceId: config.deviceId,
    groups: config.commands.groups,
    store: options.store,
    outbox: requireOutbox,
    issuers: () => issuers,
    notEarlierThan: async () => floor,
    handlers,
    skewMs: config.commands.skewSec * 1000,
    log: log.child('commands'),
    ...(options.onStep ? { onStep: options.onStep } : {}),
  });

  const commandsService: Service = {
    name: commands.name,
    async start() {
      // Before the stored commands are verified at start, which needs the issuers and the floor.
      const stored = await update.storedTrust();
      if (stored.targets) trust(stored.targets, 'store');
      else floor = stored.notEarlierThan;
      await commands.start();
    },
    stop: () => commands.stop(),
  };

  return {
    beforeLink: [...(access ? [access] : []), commandsService],
    receive: (message) => commands.receive(message),
    onTrusted: (targets) => trust(targets, 'refresh'),
  };
}
