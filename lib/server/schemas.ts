/**
 * JSON Schemas of the request bodies, checked by Fastify (Ajv) before a handler runs: types, ranges and
 * enums, so a malformed field is a 400 naming it (`param`) before any work is done. What a schema cannot
 * say (n must be 1, tool-call arguments must be JSON objects, unsupported options) is checked in
 * protocol.ts. Every optional field also accepts null (clients send null for "not set"). Unknown fields
 * are ignored, as vLLM does.
 */

const nullable = (type: string | string[], extra: Record<string, unknown> = {}) => ({
  type: [...(Array.isArray(type) ? type : [type]), 'null'],
  ...extra,
});

const stop = {
  anyOf: [
    { type: 'string', minLength: 1 },
    { type: 'array', maxItems: 16, items: { type: 'string', minLength: 1 } },
    { type: 'null' },
  ],
};

/** Sampling and length options shared by both endpoints (OpenAI's names, plus vLLM's top_k/min_p/repetition_penalty). */
const sampling = {
  model: { type: 'string' },
  temperature: nullable('number', { minimum: 0, maximum: 2 }),
  top_p: nullable('number', { exclusiveMinimum: 0, maximum: 1 }),
  top_k: nullable('integer', { minimum: -1 }),
  min_p: nullable('number', { minimum: 0, exclusiveMaximum: 1 }),
  repetition_penalty: nullable('number', { exclusiveMinimum: 0 }),
  presence_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  frequency_penalty: nullable('number', { minimum: -2, maximum: 2 }),
  logit_bias: nullable('object', { additionalProperties: { type: 'number', minimum: -100, maximum: 100 } }),
  seed: nullable('integer'),
  max_tokens: nullable('integer', { minimum: 1 }),
  stop,
  n: nullable('integer', { minimum: 1 }),
  stream: nullable('boolean'),
  stream_options: nullable('object', { properties: { include_usage: nullable('boolean') } }),
  user: nullable('string'),
};

const contentPart = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' }, text: { type: 'string' } },
};

const message = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
    content: { anyOf: [{ type: 'string' }, { type: 'array', items: contentPart }, { type: 'null' }] },
    name: nullable('string'),
    tool_calls: nullable('array', {
      items: {
        type: 'object',
        required: ['function'],
        properties: {
          id: { type: 'string' },
          type: { type: 'string', enum: ['function'] },
          function: {
            type: 'object',
            required: ['name', 'arguments'],
            properties: { name: { type: 'string', minLength: 1 }, arguments: { type: 'string' } },
          },
        },
      },
    }),
    tool_call_id: nullable('string'),
    reasoning_content: nullable('string'),
  },
};

const tool = {
  type: 'object',
  required: ['type', 'function'],
  properties: {
    type: { type: 'string', enum: ['function'] },
    function: {
      type: 'object',
      required: ['name'],
      properties: {
        name: { type: 'string', minLength: 1 },
        description: nullable('string'),
        parameters: nullable('object'),
        strict: nullable('boolean'),
      },
    },
  },
};

export const chatCompletionBody = {
  type: 'object',
  required: ['messages'],
  properties: {
    ...sampling,
    messages: { type: 'array', minItems: 1, items: message },
    max_completion_tokens: nullable('integer', { minimum: 1 }),
    tools: nullable('array', { items: tool }),
    tool_choice: {
      anyOf: [
        { type: 'string', enum: ['none', 'auto', 'required'] },
        { type: 'object', required: ['type'], properties: { type: { type: 'string' } } },
        { type: 'null' },
      ],
    },
    parallel_tool_calls: nullable('boolean'),
    logprobs: nullable('boolean'),
    top_logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
    response_format: nullable('object', { properties: { type: { type: 'string' } } }),
    // Extensions: reasoning on/off (also vLLM's chat_template_kwargs.enable_thinking) and the thinking budget.
    reasoning: nullable('boolean'),
    chat_template_kwargs: nullable('object', { properties: { enable_thinking: nullable('boolean') } }),
    thinking_budget: nullable('integer', { minimum: 0 }),
  },
};

export const completionBody = {
  type: 'object',
  required: ['prompt'],
  properties: {
    ...sampling,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' } },
        { type: 'array', items: { type: 'integer', minimum: 0 } },
        { type: 'array', items: { type: 'array', items: { type: 'integer', minimum: 0 } } },
      ],
    },
    echo: nullable('boolean'),
    suffix: nullable('string'),
    best_of: nullable('integer'),
    logprobs: nullable('integer', { minimum: 0, maximum: 20 }),
  },
};
