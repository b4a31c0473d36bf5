export { connect, RemoteModel } from './model.js';
export type { ConnectOptions, RemoteAttempt, RemoteGenerateOptions, RemoteModelInfo, RemoteStats } from './model.js';
export { RemoteChat } from './chat.js';
export type { RemoteChatOptions } from './chat.js';
export { RemoteError } from './errors.js';
export type { EndpointStats } from './endpoints.js';
