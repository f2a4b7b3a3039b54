/** Protocol v1: MQTT topic names and the wire documents' schemas. docs/protocol.md is the contract. */
export {
  TOPIC_ROOT,
  TOPIC_ID_PATTERN,
  ONLINE_PAYLOAD,
  isValidTopicId,
  stateTopic,
  onlineTopic,
  cmdTopic,
  cmdResultTopic,
  eventsTopic,
  logsTopic,
  desiredDeviceTopic,
  desiredGroupTopic,
  deviceTopics,
  parseOnlinePayload,
  type DeviceTopics,
} from './topics.js';
export {
  STATE_SCHEMA_ID,
  STATE_MAX_BYTES,
  healthValues,
  stateDocumentSchema,
  stateJsonSchema,
  validateStateDocument,
  parseStateDocument,
  encodeStateDocument,
  type StateDocument,
} from './state.js';
