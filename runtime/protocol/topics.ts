/**
 * MQTT topic names of protocol v1 (docs/protocol.md is the contract).
 *
 * Ids are checked before they become topic levels: a `/`, `+` or `#` in a device or group id would
 * silently widen a subscription or publish into another device's tree, so it is refused here
 * rather than trusted to have been validated upstream.
 */
import { OutpostError } from '../errors.js';

/** The root every v1 topic starts with; a v2 protocol gets its own root so both can coexist. */
export const TOPIC_ROOT = 'outpost/v1';

/** What a device or group id must look like (the same rule config applies to `deviceId`). */
export const TOPIC_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Whether `id` can be used as one topic level. */
export function isValidTopicId(id: string): boolean {
  return TOPIC_ID_PATTERN.test(id);
}

function level(id: string, what: string): string {
  if (!isValidTopicId(id)) {
    throw new OutpostError(
      'PROTOCOL_INVALID',
      `${what} ${JSON.stringify(id)} cannot be used in an MQTT topic: it must be 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit`,
    );
  }
  return id;
}

/** The topics one device publishes to or subscribes on. */
export interface DeviceTopics {
  /** Retained state document (`outpost.state/1`), QoS 1, device → fleet. */
  readonly state: string;
  /** Retained `'true'`/`'false'`, QoS 1; the broker publishes `'false'` as the device's will. */
  readonly online: string;
  /** Signed command envelopes, QoS 1, fleet → device. */
  readonly cmd: string;
  /** Command results, QoS 1, device → fleet. */
  readonly cmdResult: string;
  /** Events (update progress, remediation), QoS 1, device → fleet. */
  readonly events: string;
  /** Compressed log batches, QoS 1, device → fleet. */
  readonly logs: string;
  /** Retained signed desired-state document addressed to this device, fleet → device. */
  readonly desired: string;
}

/** `outpost/v1/<device>/state`. */
export function stateTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/${level(deviceId, 'device id')}/state`;
}

/** `outpost/v1/<device>/online`. */
export function onlineTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/${level(deviceId, 'device id')}/online`;
}

/** `outpost/v1/<device>/cmd`. */
export function cmdTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/${level(deviceId, 'device id')}/cmd`;
}

/** `outpost/v1/<device>/cmd/result`. */
export function cmdResultTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/${level(deviceId, 'device id')}/cmd/result`;
}

/** `outpost/v1/<device>/events`. */
export function eventsTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/${level(deviceId, 'device id')}/events`;
}

/** `outpost/v1/<device>/logs`. */
export function logsTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/${level(deviceId, 'device id')}/logs`;
}

/** `outpost/v1/group/<group>/cmd`: signed commands addressed to a group, QoS 1, fleet → devices. */
export function groupCmdTopic(group: string): string {
  return `${TOPIC_ROOT}/group/${level(group, 'group')}/cmd`;
}

/** `outpost/v1/desired/device/<device>`. */
export function desiredDeviceTopic(deviceId: string): string {
  return `${TOPIC_ROOT}/desired/device/${level(deviceId, 'device id')}`;
}

/** `outpost/v1/desired/group/<group>`. */
export function desiredGroupTopic(group: string): string {
  return `${TOPIC_ROOT}/desired/group/${level(group, 'group')}`;
}

/** All per-device topics at once, validated once. */
export function deviceTopics(deviceId: string): DeviceTopics {
  return {
    state: stateTopic(deviceId),
    online: onlineTopic(deviceId),
    cmd: cmdTopic(deviceId),
    cmdResult: cmdResultTopic(deviceId),
    events: eventsTopic(deviceId),
    logs: logsTopic(deviceId),
    desired: desiredDeviceTopic(deviceId),
  };
}

/**
 * The payloads of the `online` topic. Plain strings rather than JSON so the broker-side will
 * and a human with mosquitto_sub read the same thing.
 */
export const ONLINE_PAYLOAD = { online: 'true', offline: 'false' } as const;

/** Reads an `online` payload; anything other than the two literals is `undefined` (unknown). */
export function parseOnlinePayload(payload: string | Uint8Array): boolean | undefined {
  const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
  if (text === ONLINE_PAYLOAD.online) return true;
  if (text === ONLINE_PAYLOAD.offline) return false;
  return undefined;
}
