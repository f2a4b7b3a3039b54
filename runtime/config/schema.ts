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

const apiSchema = z.strictObject({
  /** Octal string so the file reads like chmod; group access lets operators without root query. */
  socketMode: z.string().regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "0660"').default('0660'),
});

const logSchema = z.strictObject({
  level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
});

/** The whole configuration file. */
export const configSchema = z.strictObject({
  deviceId,
  broker: brokerSchema.optional(),
  paths: pathsSchema.prefault({}),
  lifecycle: lifecycleSchema.prefault({}),
  api: apiSchema.prefault({}),
  log: logSchema.prefault({}),
});

/** The validated, defaulted configuration. Frozen once loaded; passed down, never imported. */
export type Config = Readonly<z.output<typeof configSchema>>;
/** Broker settings, present only when the device talks to a fleet broker. */
export type BrokerConfig = NonNullable<Config['broker']>;
