/**
 * Continuous batching on the JS side of the seam: every live request that wants progress contributes
 * its pending tokens to ONE native step (csrc/engine/scheduler.h decides how much of each runs), so
 * the weights are read once per step for all streams and a long prompt is prefilled in chunks
 * interleaved with the other streams' decode steps. Sequence slots are handed out in FIFO order.
 */
import type { NativeEngine, NativeSampling, NativeStepResult } from './addon-types.js';
import { NemotronError, errorFromCode } from './errors.js';

export interface StepInput {
  tokens: Int32Array;
  sample: boolean;
  sampling: NativeSampling;
  nPrompt: number;
  draw: number;
  snapshotAt?: number[];
}

/** What a running request shows the scheduler. */
export interface StepClient {
  readonly seq: number;
  /** The tokens to feed next, or null when it does not want a step now. */
  pendingInput(): StepInput | null;
  /** After a step: how many of its tokens ran, the sampled token (-1 when none), and the snapshot
   * taken at the end of its piece, if it asked for one there. */
  onStep(consumed: number, token: number, snapshot: { position: number; id: number } | null): void;
  /** The step failed; the request must finish with an error. */
  onError(err: NemotronError): void;
}

interface Waiter {
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

export class Scheduler {
  private readonly clients = new Set<StepClient>();
  private readonly waiting: Waiter[] = [];
  private live = 0;
  private running = false;
  /** Forward passes run, and tokens fed through them, since load. */
  steps = 0;
  tokensProcessed = 0;
  private inStep = new Set<StepClient>();
  private releaseAfterStep = new Set<number>();

  constructor(
    private readonly engine: NativeEngine,
    private readonly maxSequences: number,
    private readonly onRelease: () => void = () => {},
  ) {}

  get liveSequences(): number {
    return this.live;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** A fresh sequence, once a slot is free (FIFO). Rejects with the signal's reason if aborted while waiting. */
  acquire(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.live < this.maxSequences && this.waiting.length === 0) return Promise.resolve(this.create());
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal!.reason);
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** Frees a sequence (after any step that still uses it) and admits the next waiter. */
  release(seq: number): void {
    for (const c of this.inStep) {
      if (c.seq === seq) {
        this.releaseAfterStep.add(seq);
        return;
      }
    }
    this.free(seq);
  }

  /** Replaces a sequence's state with a cached snapshot's (prefix reuse). */
  restore(seq: number, snapshotId: number): void {
    this.engine.restore(seq, snapshotId);
  }

  attach(client: StepClient): void {
    this.clients.add(client);
  }

  detach(client: StepClient): void {
    this.clients.delete(client);
  }

  /** Something wants progress: make sure the step loop runs. */
  kick(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  /** Resolves once no step is running (model closing). */
  async idle(): Promise<void> {
    while (this.running) await new Promise<void>((r) => setTimeout(r, 1));
  }

  /** Fails every waiter (model closing). */
  rejectWaiting(err: unknown): void {
    for (const w of this.waiting.splice(0)) {
      w.signal?.removeEventListener('abort', w.onAbort);
      w.reject(err);
    }
  }

  private create(): number {
    const seq = this.engine.createSequence();
    this.live++;
    return seq;
  }

  private free(seq: number): void {
    this.engine.freeSequence(seq);
    this.live--;
    this.onRelease();
    while (this.live < this.maxSequences && this.waiting.length > 0) {
      const w = this.waiting.shift()!;
      w.signal?.removeEventListener('abort', w.onAbort);
      try {
        w.resolve(this.create());
      } catch (err) {
        w.reject(err);
      }
    }
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        // Let consumers woken by the last step register their demand before the batch is formed.
        await new Promise<void>((r) => setImmediate(r));
        const batch: Array<{ client: StepClient; input: StepInput }> = [];
        for (const client of this.clients) {
          const input = client.pendingInput();
          if (input) batch.push({ client, input });
        }
        if (batch.length === 0) return;
        this.inStep = new Set(batch.map((b) => b.client));
        let result: NativeStepResult | undefined;
        let failure: NemotronError | undefined;
        try {
          result = await this.engine.step(batch.map(({ client, input }) => ({ id: client.seq, ...input })));
        } catch (err) {
          const e = err as { code?: string; message?: string };
          failure = err instanceof NemotronError ? err : errorFromCode(e.code ?? 'ERR_INTERNAL', e.message ?? String(err), err);
        }
        this.inStep = new Set();
        if (result) {
          this.steps++;
          for (const c of result.consumed) this.tokensProcessed += c;
        }
        for (let i = 0; i < batch.length; i++) {
          const { client } = batch[i]!;
          if (failure) client.onError(failure);
          else {
            const id = result!.snapshotId[i]!;
            client.onStep(result!.consumed[i]!, result!.token[i]!, id >= 0 ? { position: result!.snapshotPosition[i]!, id } : null);
          }
        }
        for (const seq of this.releaseAfterStep) this.free(seq);
        this.releaseAfterStep.clear();
      }
    } finally {
      this.running = false;
    }
  }
}
