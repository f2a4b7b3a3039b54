/**
 * `outpostctl commands issuers …` and `outpostctl command send`: who may command the fleet (a
 * target in the signed update metadata, so a rotation or revocation reaches every device with its
 * next metadata refresh, no reflash), and sending one signed command and waiting for its results.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { OutpostError } from '../errors.js';
import { COMMAND_ISSUERS_SCHEMA_ID, COMMAND_ISSUERS_TARGET, issuersCustomSchema, newCommand, signCommand, type IssuersCustom } from '../commands/index.js';
import { cmdResultTopic, cmdTopic, groupCmdTopic, isValidTopicId, parseCommandResult, type CommandResult } from '../protocol/index.js';
import { canonicalBytes, readPrivateKeyFile, readPublicKeyFile } from '../trust/index.js';
import { openRepository, parseDurationMs } from '../update/tuf/index.js';
import { fileOption, optionalString, readSigningKeys, requiredString, signingOptions, strings } from './ctl-args.js';
import type { Command, CommandContext } from './command.js';

type Repository = Awaited<ReturnType<typeof openRepository>>;

function currentIssuers(repo: Repository, dir: string): IssuersCustom {
  const target = repo.getTarget(COMMAND_ISSUERS_TARGET);
  if (!target) return { schema: COMMAND_ISSUERS_SCHEMA_ID, issuers: {}, revoked: [] };
  const parsed = issuersCustomSchema.safeParse(target.custom);
  if (!parsed.success) throw new OutpostError('USAGE', `${dir}: target ${COMMAND_ISSUERS_TARGET} is not an issuers list: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  return parsed.data;
}

/** Writes the list as the target's custom (its hash is that of the list itself) and publishes. */
async function publishIssuers(repo: Repository, values: CommandContext['values'], custom: IssuersCustom): Promise<string> {
  const { targetsKey, snapshotKey, timestampKey } = await readSigningKeys(values);
  const bytes = canonicalBytes(custom);
  repo.addTarget(COMMAND_ISSUERS_TARGET, { length: bytes.length, hashes: { sha256: createHash('sha256').update(bytes).digest('hex') }, custom });
  const result = await repo.publish({ targetsKey, snapshotKey, timestampKey });
  return `targets v${result.targets}, snapshot v${result.snapshot}, timestamp v${result.timestamp}`;
}

function secondsOf(text: string, option: string): number {
  try {
    return Math.round(parseDurationMs(text) / 1000);
  } catch (err) {
    throw new OutpostError('USAGE', `--${option}: ${(err as Error).message}`);
  }
}

/** Exit codes of `command send --wait`, by outcome (sysexits, as the rest of the CLI). */
const outcomeExit: Record<CommandResult['outcome'], number> = { succeeded: 0, failed: 1, rejected: 65, expired: 65, interrupted: 75 };

async function sendCommand(ctx: CommandContext): Promise<number> {
  const { values, out, err } = ctx;
  const device = optionalString(values, 'device');
  const group = optionalString(values, 'group');
  if ((device === undefined) === (group === undefined)) throw new OutpostError('USAGE', 'give exactly one of --device ID or --group G');
  const targetId = (device ?? group) as string;
  if (!isValidTopicId(targetId)) throw new OutpostError('USAGE', `--${device ? 'device' : 'group'}: "${targetId}" is not a device or group id`);
  let args: Record<string, unknown> = {};
  const argsText = optionalString(values, 'args');
  if (argsText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(argsText);
    } catch (e) {
      throw new OutpostError('USAGE', `--args is not JSON: ${(e as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new OutpostError('USAGE', '--args must be a JSON object');
    args = parsed as Record<string, unknown>;
  }
  const validitySec = secondsOf(optionalString(values, 'expires') ?? '10m', 'expires');
  const key = await readPrivateKeyFile(requiredString(values, 'key'));
  const signed = newCommand({ issuer: key.keyid, target: device ? { device } : { group: group as string }, type: requiredString(values, 'type'), args, validitySec });
  const envelope = signCommand(signed, key);
  const json = values.json === true;
  const wait = values.wait === true;
  const { connectAsync } = await import('mqtt');
  const [ca, cert, tlsKey] = await Promise.all(['ca', 'cert', 'cert-key'].map((o) => readFile(requiredString(values, o))));
  const client = await connectAsync(requiredString(values, 'broker'), { protocolVersion: 5, ca, cert, key: tlsKey, connectTimeout: 15_000, reconnectPeriod: 0, clientId: `outpostctl-${signed.id.slice(0, 40)}` });
  try {
    const correlation = Buffer.from(signed.id);
    const results: CommandResult[] = [];
    let done: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (done = resolve));
    if (wait) {
      client.on('message', (topic, payload, packet) => {
        const sameRequest = packet.properties?.correlationData?.equals(correlation) ?? false;
        let result: CommandResult;
        try {
          result = parseCommandResult(payload);
        } catch {
          return;
        }
        if (!sameRequest && result.id !== signed.id) return;
        // The broker's ACL lets a device write only its own result topic: who answered is the
        // topic's <device>, not what the payload claims (a group member could answer for others).
        if (topic !== cmdResultTopic(result.deviceId)) return;
        if (results.some((r) => r.deviceId === result.deviceId)) return;
        results.push(result);
        if (json) out(JSON.stringify(result));
        else out(`${result.deviceId}: ${result.outcome}${result.reason ? ` (${result.reason})` : ''}: ${result.message}${result.output === undefined ? '' : `\n${JSON.stringify(result.output, null, 2)}`}`);
        if (device) done();
      });
      await client.subscribeAsync(device ? `outpost/v1/${device}/cmd/result` : 'outpost/v1/+/cmd/result', { qos: 1 });
    }
    const topic = device ? cmdTopic(device) : groupCmdTopic(group as string);
    await client.publishAsync(topic, JSON.stringify(envelope), { qos: 1, properties: { correlationData: correlation } });
    if (!wait) {
      out(json ? JSON.stringify({ id: signed.id, sent: true }) : `sent ${signed.type} ${signed.id} to ${device ?? `group ${group}`}`);
      return 0;
    }
    const timeoutMs = validitySec * 1000;
    const timer = setTimeout(done, timeoutMs);
    await finished;
    clearTimeout(timer);
    if (results.length === 0) {
      err(`no result for ${signed.id} within ${validitySec} s (the command's validity): the device may be offline; it runs the command if it connects before it expires`);
      return 69;
    }
    return Math.max(...results.map((r) => outcomeExit[r.outcome]));
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

/** The `commands` and `command` commands. */
export const commandCommands: Command[] = [
  {
    name: 'commands issuers add',
    summary: 'let a key sign commands of some types (a target in the signed metadata; devices learn it at their next check)',
    options: {
      repo: { type: 'string', valueName: 'DIR', description: 'TUF repository' },
      key: fileOption('public key of the issuer (outpostctl keys generate --role commands)'),
      type: { type: 'string', valueName: 'TYPE', description: 'command type it may send', multiple: true },
      'max-validity': { type: 'string', valueName: 'DURATION', description: 'longest validity of its commands, e.g. 1h (default 1h, at most 30d)' },
      ...signingOptions,
    },
    details: 'Adding a key already listed replaces its entry. A revoked key cannot be added again: generate a new one.',
    run: async ({ values, out }) => {
      const dir = requiredString(values, 'repo');
      const publicKey = await readPublicKeyFile(requiredString(values, 'key'));
      const repo = await openRepository(dir);
      const custom = currentIssuers(repo, dir);
      if (custom.revoked.includes(publicKey.keyid)) throw new OutpostError('USAGE', `key ${publicKey.keyid} was revoked; generate a new key`);
      const maxValiditySec = secondsOf(optionalString(values, 'max-validity') ?? '1h', 'max-validity');
      const next = { ...custom, issuers: { ...custom.issuers, [publicKey.keyid]: { key: publicKey.key, types: strings(values, 'type', 1), maxValiditySec } } };
      const parsed = issuersCustomSchema.safeParse(next);
      if (!parsed.success) throw new OutpostError('USAGE', `the issuer entry is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
      out(`issuer ${publicKey.keyid} may send ${strings(values, 'type').join(', ')} (${await publishIssuers(repo, values, parsed.data)})`);
      return 0;
    },
  },
  {
    name: 'commands issuers revoke',
    summary: 'stop a key from signing commands (devices refuse it as revoked-issuer after their next check)',
    options: {
      repo: { type: 'string', valueName: 'DIR', description: 'TUF repository' },
      keyid: { type: 'string', valueName: 'ID', description: 'key id of the issuer' },
      ...signingOptions,
    },
    run: async ({ values, out }) => {
      const dir = requiredString(values, 'repo');
      const keyid = requiredString(values, 'keyid');
      const repo = await openRepository(dir);
      const custom = currentIssuers(repo, dir);
      const { [keyid]: removed, ...issuers } = custom.issuers;
      if (removed === undefined && !custom.revoked.includes(keyid)) throw new OutpostError('USAGE', `${dir}: no issuer ${keyid}`);
      const next = issuersCustomSchema.parse({ ...custom, issuers, revoked: [...new Set([...custom.revoked, keyid])] });
      out(`issuer ${keyid} revoked (${await publishIssuers(repo, values, next)})`);
      return 0;
    },
  },
  {
    name: 'command send',
    summary: 'sign a command, publish it to a device or group, and (with --wait) print the results',
    options: {
      broker: { type: 'string', valueName: 'URL', description: 'mqtts://host:port of the fleet broker' },
      ca: fileOption('CA certificate of the broker'),
      cert: fileOption('client certificate for the broker'),
      'cert-key': fileOption('private key of the client certificate'),
      device: { type: 'string', valueName: 'ID', description: 'the device to command' },
      group: { type: 'string', valueName: 'G', description: 'the group to command' },
      type: { type: 'string', valueName: 'T', description: 'command type, e.g. diagnostics, reboot, update-check' },
      args: { type: 'string', valueName: 'JSON', description: 'the command\'s arguments (a JSON object; default {})' },
      expires: { type: 'string', valueName: 'DURATION', description: 'validity, e.g. 10m (default 10m; at most the issuer\'s)' },
      key: fileOption('private key of the issuer (outpostctl keys generate --role commands)'),
      wait: { type: 'boolean', description: 'wait for the result (a group: every result until the command expires)' },
      json: { type: 'boolean', description: 'print results as JSON lines' },
    },
    details: 'Exit code with --wait: 0 succeeded, 1 failed, 65 rejected or expired, 75 interrupted, 69 no result before the command expired.',
    run: sendCommand,
  },
];
