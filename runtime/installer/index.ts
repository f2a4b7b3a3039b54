/** The privileged installer: its request loop and deploy gate (installer side), and the agent's client. */
export { serveInstaller, type InstallerServerOptions } from './server.js';
export { requireSignedCommit, type DeployGateOptions } from './deploy-gate.js';
export { remoteHost, remoteAccessHost, installerCall, type RemoteHostOptions } from './client.js';
