export { loadModel, NemotronModel, AbortError } from './model.js';
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
  AbortBehavior,
  TokenLogprob,
  TopLogprob,
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
  DriverTooOldError,
  SelfCheckError,
  NumericalError,
  IdleTimeoutError,
  DownloadError,
} from './errors.js';
export { pullModel, parseHubSpec, hubCacheDir } from './hub/index.js';
export type { HubOptions, PullOptions, PullResult, PulledFile, DownloadProgress, HubSpec } from './hub/index.js';
export type { LoadProgress, PhaseProgress, LoadProgressCallback } from './load-progress.js';
export { ChatSession } from './chat/session.js';
export type { ChatOptions, NewChatOptions, TurnOptions, ContextOverflowPolicy, ToolResult, TurnInput } from './chat/session.js';
export type { Message, OpenAIChatMessage, OpenAIContentPart, OpenAIToolCall } from './chat/openai.js';
export type { NemotronErrorCode, SelfCheckDifference } from './errors.js';
export { runSelfCheck, SELF_CHECK_TOLERANCES } from './selfcheck.js';
export type { SelfCheckReport, SelfCheckFigures, SelfCheckOptions, SelfCheckDevice } from './selfcheck.js';
export { makeTinyModel } from './tiny-model/index.js';
export type { TinyModelOptions, TinyModelResult } from './tiny-model/index.js';
export type { NativeConfig } from './addon-types.js';
export { planMemory, formatBytes } from './memory.js'; export type { MemoryPlan, PlanOptions, PlanConfig, KvDtype, WeightDtype } from './memory.js';
export { NEMOTRON_NANO_9B_V2, NEMOTRON_NANO_12B_V2, NEMOTRON_3_NANO_30B_A3B, NEMOTRON_H_4B } from './known-configs.js';
export { activeParameterCount, parameterCount } from './memory.js';
export { connect, RemoteModel, RemoteChat, RemoteError } from './remote/index.js';
export type { ConnectOptions, RemoteAttempt, RemoteGenerateOptions, RemoteModelInfo, RemoteStats, RemoteChatOptions, EndpointStats } from './remote/index.js';
export type { ResponseFormat, ToolChoice, JsonSchema } from './grammar.js';
export { toolCallsSchema } from './grammar.js';
export type { TextModel, TextChat } from './text-model.js';
