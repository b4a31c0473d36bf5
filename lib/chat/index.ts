/** Text-level building blocks of chat generation: templates, reasoning split, stop strings, tool calls. */
export { ChatTemplate, validateMessages, reasoningFromKeywords, THINK_KEYWORD, NO_THINK_KEYWORD } from './template.js';
export type { Role, ToolCall, ChatMessage, ToolDefinition, RenderOptions } from './template.js';
export { ReasoningSplitter } from './reasoning.js';
export type { ReasoningPiece } from './reasoning.js';
export { StopMatcher } from './stop.js';
export { ToolCallParser, parseToolCallList, TOOLCALL_OPEN, TOOLCALL_CLOSE } from './tool-calls.js';
export type { ToolCallEvent, ToolCallParserEvent } from './tool-calls.js';
