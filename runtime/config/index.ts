/** Configuration: one strict schema, layered files, errors that name file and field. */
export { configSchema, healthCheckSchema, unitNameSchema, tunnelHostSchema, type Config, type BrokerConfig, type UpdateConfig, type HealthConfig, type HealthCheckConfig } from './schema.js';
export { loadConfig, loadConfigLayers, validateConfigFile, defaultConfigPath, overlayFileName, type ConfigProblem, type LoadConfigOptions, type LoadedConfig } from './load.js';
export { protectedConfigPaths, isProtectedSetting, protectedBelow } from './protected.js';
