/** Configuration: one strict schema, layered files, errors that name file and field. */
export { configSchema, unitNameSchema, tunnelHostSchema, type Config, type BrokerConfig, type UpdateConfig } from './schema.js';
export { loadConfig, validateConfigFile, defaultConfigPath, overlayFileName, type ConfigProblem, type LoadConfigOptions } from './load.js';
