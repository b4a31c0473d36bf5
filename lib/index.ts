export { loadModel, NemotronModel } from './model.js';
export type {
  LoadOptions,
  ModelInfo,
  ModelConfig,
  SamplingOptions,
  GenerateOptions,
  GenerateResult,
  StreamEvent,
  FinishReason,
  Usage,
  Timings,
  EvaluateOptions,
  ModelStats,
} from './model.js';
export type { ChatMessage, ToolCall, ToolDefinition, Role } from './chat/template.js';
export {
  NemotronError,
  ModelLoadError,
  UnsupportedModelError,
  InvalidArgumentError,
  ContextOverflowError,
  ModelClosedError,
  NativeBinaryError,
  InternalError,
  TemplateError,
  SessionFileError,
  DeviceUnavailableError,
  NumericalError,
  IdleTimeoutError,
  DownloadError,
} from './errors.js';
export { pullModel, parseHubSpec, hubCacheDir } from './hub/index.js';
export type { HubOptions, PullOptions, PullResult, PulledFile, DownloadProgress, HubSpec } from './hub/index.js';
export type { LoadProgress, PhaseProgress, LoadProgressCallback } from './load-progress.js';
export { ChatSession } from './chat/session.js';
export type { ChatOptions, TurnOptions, ContextOverflowPolicy } from './chat/session.js';
export type { NemotronErrorCode } from './errors.js';
export { makeTinyModel } from './tiny-model/index.js';
export type { TinyModelOptions } from './tiny-model/index.js';
export { planMemory, formatBytes } from './memory.js'; export type { MemoryPlan, PlanOptions, PlanConfig } from './memory.js';
export { NEMOTRON_NANO_9B_V2, NEMOTRON_NANO_12B_V2 } from './known-configs.js';
export { connect, RemoteModel, RemoteChat, RemoteError } from './remote/index.js';
export type { ConnectOptions, RemoteAttempt, RemoteGenerateOptions, RemoteModelInfo, RemoteStats, RemoteChatOptions, EndpointStats } from './remote/index.js';
export type { ResponseFormat, ToolChoice, JsonSchema } from './grammar.js';
export { toolCallsSchema } from './grammar.js';
export type { TextModel, TextChat } from './text-model.js';
