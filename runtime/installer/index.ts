/** The privileged installer: its request loop, deploy and access gates (installer side), and the agent's client. */
export { serveInstaller, type InstallerServerOptions } from './server.js';
export { requireSignedCommit, exportedTargets, type DeployGateOptions, type ExportWalkOptions } from './deploy-gate.js';
export { gatedAccessHost, type AccessGateOptions } from './access-gate.js';
export { remoteHost, remoteAccessHost, installerCall, type RemoteHostOptions } from './client.js';
