/**
 * The JavaScript end of the engine's request scheduler (csrc/engine/scheduler.h). The engine owns each
 * request from registration to its last token: admission into sequence slots, prefix restores, prompt
 * chunks, the batched forward pass, sampling, snapshots and cache eviction all happen inside one native
 * step on a worker thread. This side only pumps steps and routes their events to the requests that
 * registered handlers; every call it makes on the JS thread is O(1) and never waits for a step.
 *
 * The pump runs while the engine has work: one step at a time, with a macrotask turn between steps so
 * that consumers woken by the last step's events can ask for more (resume) before the next one starts.
 */
import type { NativeEngine, NativeRequestEnd, NativeRequestSpec, NativeStepEvents } from './addon-types.js';
import { typedError, type NemotronError } from './errors.js';

/** A sampled token's log-prob and the k most likely tokens at its position (raw model distribution). */
export interface NativeTokenLogprobs {
  logprob: number;
  top: Array<[token: number, logprob: number]>;
}

/** What a registered request hears from the engine. */
export interface RequestHandler {
  /** It got a sequence at `at` (performance.now() when the step that admitted it began); `cached`
   * prompt tokens were restored from the prefix cache. */
  onAdmitted(cached: number, at: number): void;
  /** A sampled token; `logprobs` when the request asked for them (topLogprobs). */
  onToken(token: number, logprobs?: NativeTokenLogprobs): void;
  /** A snapshot of its prompt was cached at `position`; when `pinned`, the handler owns one pin of `id`. */
  onSnapshot(position: number, id: number, pinned: boolean): void;
  /** The engine is done with it (it has freed its sequence). */
  onFinished(reason: NativeRequestEnd, error: NemotronError | undefined, logits: Float32Array | undefined): void;
}

const setImmediateP = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Scheduler {
  private readonly handlers = new Map<number, RequestHandler>();
  private pump: Promise<void> | null = null;
  private closed = false;
  /** Steps that ran a forward pass, and tokens fed through them, since load. */
  steps = 0;
  tokensProcessed = 0;
  /** Wall time inside native steps, and between a step's end and the next step's start (event routing,
   * consumers, the rest of the event loop): what bench/serving.ts reports as JavaScript time per step. */
  nativeMs = 0;
  betweenMs = 0;

  constructor(private readonly engine: NativeEngine) {}

  /** Registers a request with the engine; its events go to `handler` until it finishes. */
  submit(spec: NativeRequestSpec, handler: RequestHandler): number {
    const id = this.engine.submit(spec);
    this.handlers.set(id, handler);
    this.kick();
    return id;
  }

  /** The request's consumer wants its next token (after `forced` tokens, if any). */
  resume(id: number, forced?: readonly number[]): void {
    if (this.closed) return;
    this.engine.resume(id, forced && forced.length > 0 ? Int32Array.from(forced) : undefined);
    this.kick();
  }

  /** Ends a request; the engine frees its sequence at the next step. */
  cancel(id: number): void {
    if (this.closed) return;
    this.engine.cancel(id);
    this.kick();
  }

  pin(snapshotId: number, delta: 1 | -1): void {
    if (this.closed) return;
    this.engine.pin(snapshotId, delta);
    this.kick();
  }

  /** Resolves once no step is running. */
  idle(): Promise<void> {
    return this.pump ?? Promise.resolve();
  }

  /** No more steps (model closing): the running one, if any, still delivers its events. */
  close(): void {
    this.closed = true;
  }

  get liveRequests(): number {
    return this.handlers.size;
  }

  private kick(): void {
    if (this.pump || this.closed) return;
    this.pump = this.run().finally(() => {
      this.pump = null;
    });
  }

  private async run(): Promise<void> {
    let lastEnd = 0;
    // Let the caller that kicked finish its synchronous work (more submits) before the first step.
    await setImmediateP();
    while (!this.closed && this.engine.hasWork()) {
      const t0 = performance.now();
      if (lastEnd > 0) this.betweenMs += t0 - lastEnd;
      let events: NativeStepEvents;
      try {
        events = await this.engine.runStep();
      } catch (err) {
        // A failed step (an engine bug, not a request's error): every request ends with it.
        const e = typedError(err);
        for (const [id, h] of [...this.handlers]) {
          this.handlers.delete(id);
          h.onFinished('error', e, undefined);
        }
        return;
      }
      this.nativeMs += performance.now() - t0;
      if (events.ranForward) this.steps++;
      this.tokensProcessed += events.tokensProcessed;
      this.dispatch(events, t0);
      lastEnd = performance.now();
      await setImmediateP();
    }
  }

  /** Routes one step's events; admissions happen as a step begins, at `stepStart`. */
  private dispatch(ev: NativeStepEvents, stepStart: number): void {
    const { admitted, tokens, snapshots, finished } = ev;
    for (let i = 0; i < admitted.length; i += 2) this.handlers.get(admitted[i]!)?.onAdmitted(admitted[i + 1]!, stepStart);
    for (let i = 0; i < snapshots.length; i += 4) {
      const h = this.handlers.get(snapshots[i]!);
      const id = snapshots[i + 2]!;
      const pinned = snapshots[i + 3] === 1;
      if (h) h.onSnapshot(snapshots[i + 1]!, id, pinned);
      else if (pinned) this.pin(id, -1); // nobody left to hold it
    }
    // Log-probs, when any request asked for them: at most one token per request per step.
    let lps: Map<number, NativeTokenLogprobs> | undefined;
    const flat = ev.logprobs;
    if (flat && flat.length > 0) {
      lps = new Map();
      for (let i = 0; i < flat.length; ) {
        const request = flat[i]!;
        const k = flat[i + 3]!;
        const top: Array<[number, number]> = [];
        for (let j = 0; j < k; j++) top.push([flat[i + 4 + 2 * j]!, flat[i + 5 + 2 * j]!]);
        lps.set(request, { logprob: flat[i + 2]!, top });
        i += 4 + 2 * k;
      }
    }
    for (let i = 0; i < tokens.length; i += 2) this.handlers.get(tokens[i]!)?.onToken(tokens[i + 1]!, lps?.get(tokens[i]!));
    for (const f of finished) {
      const h = this.handlers.get(f.request);
      this.handlers.delete(f.request);
      h?.onFinished(f.reason, f.error ? typedError(f.error) : undefined, f.logits);
    }
  }
}
