/** Local API over a unix socket: server, client, and the status document. */
export { ApiServer, type ApiServerOptions, type Routes, type Handler, type Upload, type UploadHandler } from './server.js';
export { apiGet, apiRequest, apiUpload } from './client.js';
export { statusSchema, formatStatus, type Status } from './status.js';
export { apiAccess, type AccessGroup, type AccessRule } from './access.js';
export { healthReportSchema, formatHealth, healthExitCode, type HealthReportDocument } from './health.js';
