export { pullModel } from './download.js';
export type { HubOptions, PullOptions, PullResult, PulledFile, DownloadProgress } from './download.js';
export { parseHubSpec, isHubSpec } from './spec.js';
export type { HubSpec } from './spec.js';
export { hubCacheDir, hubEndpoint, hubToken, hubOffline, repoFolderName } from './cache.js';
