/**
 * The thinking budget against any OpenAI-compatible server, as NVIDIA documents it for vLLM: the prompt is
 * rendered here (the client-side template and tokenizer), the reasoning is generated through
 * /v1/completions with max_tokens = the budget, then — while the reasoning is still open — up to 500 more
 * tokens stopped at the next newline, then `</think>\n\n` is appended and the answer is generated from the
 * whole context. Each step is one complete request whose prompt is the previous prompt plus every token
 * generated so far (token ids, so nothing is re-tokenized), and the server's prefix cache restores all
 * but the new tokens.
 *
 * The text work is the local engine's own: a GenerationRequest (lib/generation.ts) consumes the tokens and
 * decides when the budget closes the reasoning, exactly as it does for the local engine, through a
 * scheduler stand-in (SegmentScheduler) that fetches tokens from the server instead of a native step.
 * So with greedy sampling the result equals the local engine's token for token. (Seeded sampling draws
 * from (seed, token index) per request; each segment restarts the index, so seeded results are valid
 * draws but not the local ones. Presence/frequency penalties likewise see only a segment's tokens.)
 *
 * Token ids come back through `return_token_ids: true` (vLLM ≥ 0.10.2, and `nemotron-node serve`); from a
 * server that ignores it, the segment's text is tokenized here instead (exact unless the model produced a
 * non-canonical tokenization).
 */
import type { NativeRequestEnd, NativeRequestSpec } from '../addon-types.js';
import { GenerationRequest, THINKING_GRACE_TOKENS, stopList, type GenerateOptions, type RequestSpec, type StreamEvent } from '../generation.js';
import type { RequestHandler } from '../scheduler.js';
import { validateMessages } from '../chat/template.js';
import { InvalidArgumentError, type NemotronError } from '../errors.js';
import { RemoteError } from './errors.js';
import { wireSampling, withReasoningKeyword, type RemoteCompletions, type RoutedRequest } from './wire.js';
import type { ClientTokenizer } from './tokenizer.js';

interface CompletionAnswer {
  choices?: Array<{ text?: string; token_ids?: number[] | null; finish_reason?: string | null }>;
  usage?: { prompt_tokens_details?: { cached_tokens?: number | null } | null } | null;
}

/** Stands in for the native scheduler: one request, whose tokens come from /v1/completions segments. */
class SegmentScheduler {
  private handler: RequestHandler | null = null;
  private waiter: ((forced: number[] | null) => void) | null = null;
  private cancelled = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly model: RemoteCompletions,
    private readonly tok: ClientTokenizer,
    private readonly plan: { budget: number | undefined; stop: string[]; sampling: Record<string, unknown>; route: RoutedRequest },
  ) {
    plan.route.signal?.addEventListener('abort', () => this.abort.abort(plan.route.signal!.reason), { once: true });
  }

  submit(spec: NativeRequestSpec, handler: RequestHandler): number {
    this.handler = handler;
    void this.drive(spec).catch((err: unknown) => {
      if (!this.cancelled) handler.onFinished('error', err as NemotronError, undefined);
    });
    return 1;
  }

  resume(_id: number, forced?: readonly number[]): void {
    const w = this.waiter;
    this.waiter = null;
    w?.(forced ? [...forced] : []);
  }

  cancel(): void {
    this.cancelled = true;
    this.abort.abort();
    const w = this.waiter;
    this.waiter = null;
    w?.(null);
  }

  pin(): void {}

  private next(): Promise<number[] | null> {
    if (this.cancelled) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  private finish(reason: NativeRequestEnd): void {
    if (!this.cancelled) this.handler!.onFinished(reason, undefined, undefined);
  }

  private async drive(spec: NativeRequestSpec): Promise<void> {
    const handler = this.handler!;
    const prompt = Array.from(spec.prompt);
    const generated: number[] = [];
    // Phase 1: up to the budget. Phase 2: up to 500 more, stopped at a newline. Then: the rest.
    let cap: number | undefined = this.plan.budget;
    let newline = false;
    let admitted = false;
    const route = { ...this.plan.route, signal: this.abort.signal };
    while (!this.cancelled) {
      const remaining = spec.maxTokens - generated.length;
      if (remaining <= 0) return this.finish('length');
      const limit = cap !== undefined ? Math.min(cap, remaining) : remaining;
      const stop = newline ? [...this.plan.stop, '\n'] : this.plan.stop;
      let answer: CompletionAnswer;
      try {
        answer = await this.model.postWithFailover<CompletionAnswer>(
          '/v1/completions',
          {
            model: this.model.info.model,
            prompt: [...prompt, ...generated],
            ...this.plan.sampling,
            max_tokens: limit,
            ...(stop.length ? { stop } : {}),
            return_token_ids: true,
            skip_special_tokens: false,
            ...(route.sessionId ? { user: route.sessionId } : {}),
          },
          route,
        );
      } catch (err) {
        if (this.cancelled) return;
        throw err;
      }
      const choice = answer.choices?.[0];
      if (!choice) throw new RemoteError('ERR_REMOTE', 'a /v1/completions answer has no choices');
      const tokens = Array.isArray(choice.token_ids) ? choice.token_ids : this.tok.tokenizer.encode(choice.text ?? '', false);
      if (!admitted) {
        admitted = true;
        handler.onAdmitted(answer.usage?.prompt_tokens_details?.cached_tokens ?? 0, performance.now());
      }
      let forcedClose = false;
      for (const t of tokens) {
        generated.push(t);
        handler.onToken(t);
        const forced = await this.next();
        if (forced === null) return; // ended on the consumer's side
        if (forced.length > 0) {
          generated.push(...forced);
          forcedClose = true;
          break;
        }
      }
      if (forcedClose) {
        cap = undefined;
        newline = false;
        continue;
      }
      const last = tokens.length ? this.tok.tokenizer.decode([tokens[tokens.length - 1]!]) : '';
      if (choice.finish_reason === 'length' && limit < remaining && cap !== undefined) {
        // Our own cap ended the segment, not the request's budget of tokens.
        if (!newline && this.plan.budget !== undefined && cap === this.plan.budget) {
          cap = THINKING_GRACE_TOKENS;
          newline = true;
        } else {
          cap = undefined;
          newline = false;
        }
        continue;
      }
      if (choice.finish_reason === 'stop' && newline && last.includes('\n')) {
        // Our newline stop, after the reasoning had closed by itself: the answer goes on.
        cap = undefined;
        newline = false;
        continue;
      }
      return this.finish(choice.finish_reason === 'length' ? 'length' : 'stop');
    }
  }
}

/** generate/stream with messages and a thinking budget, through /v1/completions. */
export async function* runThinkingBudget(model: RemoteCompletions, tok: ClientTokenizer, options: GenerateOptions & { thinkingBudget: number }, route: RoutedRequest): AsyncGenerator<StreamEvent, void, undefined> {
  if (!tok.template) throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `the tokenizer at ${tok.source} has no chat template: the thinking budget renders the prompt on the client`);
  const messages = validateMessages(options.messages);
  // The keyword form of the switch, rendered as the local engine renders `reasoning` (identical text).
  const text = tok.template.render(withReasoningKeyword(messages, options.reasoning), options.tools ? { tools: options.tools } : {});
  const prompt = Int32Array.from(tok.tokenizer.encode(text, true));
  const startsInReasoning = /<think>\s*$/.test(text);
  const sampling = wireSampling(options, startsInReasoning);
  // A random seed, as the local engine draws one, shared by every segment of this request.
  if (sampling['seed'] === undefined && (sampling['temperature'] as number) > 0) sampling['seed'] = Math.floor(Math.random() * 2 ** 32);
  const maxTokens = sampling['max_tokens'] as number;
  delete sampling['max_tokens'];
  delete sampling['stop'];
  const stop = stopList(options.stop);
  const scheduler = new SegmentScheduler(model, tok, { budget: startsInReasoning ? options.thinkingBudget : undefined, stop, sampling, route });
  const spec: RequestSpec = {
    prompt,
    maxTokens,
    sampling: { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, logitBias: [], seed: 0 }, // unused: the server samples
    stop,
    eos: new Set(),
    startsInReasoning,
    thinkingBudget: options.thinkingBudget,
    closeReasoning: startsInReasoning ? tok.tokenizer.encode('</think>\n\n', false) : [],
    parseToolCalls: true,
    signal: route.signal,
    reusePrefix: true,
    snapshotAt: [],
    pinAt: [],
    snapshotEvery: 0,
    idleTimeoutMs: 0,
    topLogprobs: -1, // the remote server samples: no log-probs on this path
    abortBehavior: 'resolve',
  };
  const request = new GenerationRequest(spec, scheduler, tok.tokenizer);
  for await (const ev of request.run()) {
    // A request refused before any token (a 4xx, no endpoint reachable) throws, as the chat path does;
    // a failure after tokens were delivered ends the result with finishReason 'error', as locally.
    if (ev.type === 'done' && ev.result.finishReason === 'error' && ev.result.tokens.length === 0 && ev.result.error) throw ev.result.error;
    yield ev;
  }
}
