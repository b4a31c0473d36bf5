/**
 * connect() against `nemotron-node serve` (createServer) on the tiny model: the same calls give the same
 * tokens as the local model (generate, stream, chat with reasoning on and off, seeds, the thinking budget
 * through /v1/completions, tools); aborting cancels the generation on the server; and three replicas
 * behind one connect([...]) client keep each session on its replica (cached tokens on every later turn)
 * and move a killed replica's sessions elsewhere without an error or a lost message.
 */
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { GenerateResult, StreamEvent } from '../../lib/generation.js';
import { loadModel, type NemotronModel } from '../../lib/model.js';
import { connect, type RemoteAttempt, type RemoteModel } from '../../lib/remote/index.js';
import { createServer, type NemotronServer } from '../../lib/server/index.js';
import type { TextModel } from '../../lib/text-model.js';
import { makeTinyModel } from '../../lib/tiny-model/index.js';
import { tempDir } from '../helpers.js';

const BAN_END = { 12: -100, 2: -100 };

/** What must be equal between a local and a remote result (the remote chat path returns no token ids). */
function visible(r: GenerateResult) {
  return { text: r.text, reasoning: r.reasoning, toolCalls: r.toolCalls, finishReason: r.finishReason, promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens, reasoningTokens: r.usage.reasoningTokens };
}

async function collect(events: AsyncIterable<StreamEvent>): Promise<{ text: string; reasoning: string; result: GenerateResult }> {
  let text = '';
  let reasoning = '';
  let result: GenerateResult | undefined;
  for await (const ev of events) {
    if (ev.type === 'text') text += ev.text;
    else if (ev.type === 'reasoning') reasoning += ev.text;
    else if (ev.type === 'done') result = ev.result;
  }
  return { text, reasoning, result: result! };
}

describe('connect() against nemotron-node serve: the same outputs as the local model', () => {
  const tmp = tempDir('remote');
  let dir: string;
  let local: NemotronModel;
  let server: NemotronServer;
  let remote: RemoteModel;

  beforeAll(async () => {
    dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 3, maxPositionEmbeddings: 4096 });
    local = await loadModel(dir, { contextLength: 4096, maxSequences: 4, threads: 1 });
    server = await createServer(local, { modelName: 'tiny' });
    const url = await server.listen(0, '127.0.0.1');
    remote = await connect(url, { tokenizer: dir });
  });
  afterAll(async () => {
    await remote?.close();
    await server?.close();
    await local?.close();
    tmp.cleanup();
  });

  it('learns the model id from /v1/models; generate and stream on a raw prompt equal the local ones', async () => {
    expect(remote.info.model).toBe('tiny');
    const opts = { prompt: 'Once upon a time', maxTokens: 24, temperature: 0, logitBias: BAN_END };
    const a = await local.generate(opts);
    const b = await remote.generate(opts);
    expect(visible(b)).toEqual(visible(a));
    expect(b.finishReason).toBe('length');
    const s = await collect(remote.stream({ ...opts, stop: a.text.slice(6, 9) }));
    const l = await collect(local.stream({ ...opts, stop: a.text.slice(6, 9) }));
    expect(s.text).toBe(l.text);
    expect(s.result.finishReason).toBe(l.result.finishReason);
    // token ids as the prompt
    const ids = local.tokenize('The weather today');
    expect(visible(await remote.generate({ prompt: ids, maxTokens: 12, temperature: 0 }))).toEqual(visible(await local.generate({ prompt: ids, maxTokens: 12, temperature: 0 })));
  });

  it('chat messages with reasoning on and off, greedy and seeded: equal text, reasoning and token counts', async () => {
    const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hello there' }];
    for (const reasoning of [true, false]) {
      for (const sampling of [{ temperature: 0 }, { temperature: 0.8, seed: 11 }]) {
        const opts = { messages, reasoning, maxTokens: 24, logitBias: BAN_END, ...sampling };
        const a = await local.generate(opts);
        const b = await remote.generate(opts);
        expect(visible(b)).toEqual(visible(a));
        if (reasoning) expect(b.reasoning.length + b.usage.reasoningTokens).toBeGreaterThan(0);
        else expect(b.usage.reasoningTokens).toBe(0);
        const s = await collect(remote.stream(opts));
        expect(s.text).toBe(a.text);
        expect(s.reasoning).toBe(a.reasoning);
      }
    }
  });

  it('chat sessions (send, stream, fork, save/load keep the messages) give the local sessions\' replies turn by turn', async () => {
    // One test body for both: the shared TextModel interface.
    async function conversation(m: TextModel, file: string) {
      const out: unknown[] = [];
      const chat = m.chat({ system: 'You are terse.', reasoning: true });
      out.push(visible(await chat.send('What is two plus two?', { maxTokens: 12, temperature: 0, logitBias: BAN_END })));
      const streamed = await collect(chat.stream('And three plus three?', { maxTokens: 10, temperature: 0 }));
      out.push(visible(streamed.result));
      const fork = chat.fork();
      out.push(visible(await fork.send('Say more', { maxTokens: 8, temperature: 0 })));
      await chat.save(file);
      const loaded = await m.loadChat(file);
      out.push(visible(await loaded.send('Say more', { maxTokens: 8, temperature: 0 })));
      out.push(loaded.messages.length, fork.messages.length, chat.messages.length);
      const off = m.chat({ reasoning: false });
      out.push(visible(await off.send('Hi', { maxTokens: 8, temperature: 0, logitBias: BAN_END })));
      return out;
    }
    const a = await conversation(local, path.join(tmp.dir, 'local.session'));
    const b = await conversation(remote, path.join(tmp.dir, 'remote.session.json'));
    expect(b).toEqual(a);
    expect(a.slice(4, 7)).toEqual([7, 7, 5]);
  });

  it('the thinking budget through /v1/completions equals the local engine\'s, token for token', async () => {
    const messages = [{ role: 'user' as const, content: 'Think about the number seven' }];
    let closedByBudget = 0;
    // A nudge towards newlines (token 31) makes the budget's "close at the next newline" happen early; without
    // it the reasoning runs past the budget to maxTokens (the 500-token grace is capped by maxTokens).
    for (const [thinkingBudget, nudge] of [[1, 3], [4, 3], [12, 2], [3, 0]] as const) {
      const opts = { messages, reasoning: true, thinkingBudget, maxTokens: 80, temperature: 0, logitBias: { ...BAN_END, 14: -100, 31: nudge } };
      const a = await local.generate(opts);
      const b = await remote.generate(opts);
      expect(b.tokens).toEqual(a.tokens);
      expect(visible(b)).toEqual(visible(a));
      if (a.text.length > 0) closedByBudget++;
      expect(a.usage.reasoningTokens).toBeGreaterThanOrEqual(Math.min(thinkingBudget, 80));
      const s = await collect(remote.stream(opts));
      expect(s.result.tokens).toEqual(a.tokens);
    }
    // With </think> banned, only the budget can have closed the reasoning.
    expect(closedByBudget).toBeGreaterThan(0);
    // Reasoning off: the budget has nothing to close.
    const off = { messages, reasoning: false, thinkingBudget: 4, maxTokens: 16, temperature: 0 };
    expect((await remote.generate(off)).tokens).toEqual((await local.generate(off)).tokens);
  });

  it('tools: rendered by the template, same output (and <TOOLCALL> text parsed the same way)', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const messages = [
      { role: 'user' as const, content: 'Weather in Paris?' },
      { role: 'assistant' as const, content: '', toolCalls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] },
      { role: 'tool' as const, content: '{"temp": 21}' },
    ];
    const opts = { messages, tools, reasoning: false, maxTokens: 16, temperature: 0 };
    const a = await local.generate(opts);
    const b = await remote.generate(opts);
    expect(visible(b)).toEqual(visible(a));
    // Force a <TOOLCALL> opening: both report the same unterminated call the same way.
    const forced = { ...opts, logitBias: { 15: 100 } as Record<number, number>, maxTokens: 3 };
    const fa = await local.generate(forced);
    const fb = await remote.generate(forced);
    expect({ text: fb.text, toolCalls: fb.toolCalls, toolCallErrors: fb.toolCallErrors }).toEqual({ text: fa.text, toolCalls: fa.toolCalls, toolCallErrors: fa.toolCallErrors });
  });

  it('an AbortSignal cancels the generation on the server', async () => {
    await local.idle();
    const before = local.stats().tokensProcessed;
    const controller = new AbortController();
    const events: StreamEvent[] = [];
    for await (const ev of remote.stream({ messages: [{ role: 'user', content: 'Go on forever' }], reasoning: false, maxTokens: 3000, logitBias: BAN_END, signal: controller.signal })) {
      events.push(ev);
      if (events.length === 3) controller.abort();
    }
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    expect((done as { result: GenerateResult }).result.finishReason).toBe('abort');
    // The server noticed the disconnect: its sequence is freed and it stops computing tokens.
    const t0 = Date.now();
    while (local.stats().liveSequences > 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(local.stats().liveSequences).toBe(0);
    await local.idle();
    const after = local.stats().tokensProcessed;
    await new Promise((r) => setTimeout(r, 200));
    expect(local.stats().tokensProcessed).toBe(after);
    expect(after - before).toBeLessThan(1000);
  });

  it('serve echoes the session id (x-session-id, else `user`) in its answer', async () => {
    const base = remote.info.endpoints[0]!;
    const body = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };
    const a = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-session-id': 'abc-123' }, body: JSON.stringify(body) });
    expect(a.headers.get('x-session-id')).toBe('abc-123');
    await a.json();
    const b = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, user: 'user-7', stream: true }) });
    expect(b.headers.get('x-session-id')).toBe('user-7');
    await b.text();
  });

  it('errors: a 4xx is a RemoteError with the server\'s status and code; the thinking budget needs the tokenizer', async () => {
    const err = await remote.generate({ prompt: 'x', maxTokens: 100_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_REMOTE', status: 400 });
    const bare = await connect(remote.info.endpoints[0]!, { model: 'tiny' });
    await expect(bare.generate({ messages: [{ role: 'user', content: 'hi' }], thinkingBudget: 4 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await bare.close();
  });
});

describe('three replicas behind one connect([...]) client', () => {
  const tmp = tempDir('remote-fleet');
  const models: NemotronModel[] = [];
  const servers: NemotronServer[] = [];
  const urls: string[] = [];

  beforeAll(async () => {
    const dir = path.join(tmp.dir, 'tiny');
    await makeTinyModel(dir, { seed: 5, maxPositionEmbeddings: 2048 });
    for (let i = 0; i < 3; i++) {
      const m = await loadModel(dir, { contextLength: 2048, maxSequences: 8, threads: 1 });
      const s = await createServer(m, { modelName: 'tiny' });
      models.push(m);
      servers.push(s);
      urls.push(await s.listen(0, '127.0.0.1'));
    }
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    for (const m of models) await m.close();
    tmp.cleanup();
  });

  it('20 sessions x 5 turns: affinity holds (every later turn restores the previous prompt from the cache); a replica killed mid-run costs its sessions one cache miss, no error, no message', async () => {
    const attempts: RemoteAttempt[] = [];
    const client = await connect(urls, { model: 'tiny', healthCheckIntervalMs: 250, onAttempt: (a) => attempts.push(a) });
    const SESSIONS = 20;
    const TURNS = 5;
    const victim = urls[1]!;
    const sessions = Array.from({ length: SESSIONS }, (_, i) => client.chat({ system: `You are assistant number ${i}.`, reasoning: false, sessionId: `session-${i}` }));
    const homes = sessions.map((s) => client.endpointFor(s.sessionId));
    const victims = new Set(sessions.filter((_, i) => homes[i] === victim).map((s) => s.sessionId));
    expect(victims.size).toBeGreaterThan(0);
    expect(victims.size).toBeLessThan(SESSIONS);

    let turnsDone = 0;
    let killedAt = -1;
    let killing: Promise<void> | undefined;
    const log: Array<{ session: string; turn: number; cached: number; prompt: number; endpoint: string; ms: number }> = [];
    const t0 = performance.now();
    await Promise.all(
      sessions.map(async (chat) => {
        for (let turn = 1; turn <= TURNS; turn++) {
          const t = performance.now();
          const r = await chat.send(`Turn ${turn}: tell me something about ${chat.sessionId}`, { maxTokens: 4, temperature: 0 });
          const ms = performance.now() - t;
          expect(['stop', 'length']).toContain(r.finishReason);
          const served = attempts.filter((a) => a.sessionId === chat.sessionId && a.ok).at(-1)!;
          log.push({ session: chat.sessionId, turn, cached: r.usage.cachedTokens, prompt: r.usage.promptTokens, endpoint: served.endpoint, ms });
          // Kill the victim replica once 40% of all turns are done, while the others are mid-request.
          if (++turnsDone === Math.round(0.4 * SESSIONS * TURNS)) {
            killedAt = turnsDone;
            // Abruptly: stop listening and cut every open connection at once (streams in flight break mid-way).
            killing = servers[1]!.close();
            servers[1]!.app.server.closeAllConnections();
          }
        }
      }),
    );
    await killing;
    const wallMs = performance.now() - t0;

    // No message lost: every session has its system message and 5 user + 5 assistant messages.
    for (const s of sessions) expect(s.messages.length).toBe(1 + 2 * TURNS);
    expect(killedAt).toBeGreaterThan(0);
    // Nothing is served by the victim after it died, and every victim session ended up elsewhere.
    const lastHome = new Map(log.map((l) => [l.session, l.endpoint]));
    for (const id of victims) expect(lastHome.get(id)).not.toBe(victim);
    // Sessions of the surviving replicas never moved.
    for (const [i, s] of sessions.entries()) if (!victims.has(s.sessionId)) expect(new Set(log.filter((l) => l.session === s.sessionId).map((l) => l.endpoint))).toEqual(new Set([homes[i]]));

    // Affinity: every later turn on the same replica as the previous turn restored its conversation.
    const bySession = new Map<string, typeof log>();
    for (const l of log) bySession.set(l.session, [...(bySession.get(l.session) ?? []), l]);
    let later = 0;
    let hits = 0;
    let moved = 0;
    let missesAfterMove = 0;
    for (const turns of bySession.values()) {
      turns.sort((a, b) => a.turn - b.turn);
      for (let k = 1; k < turns.length; k++) {
        later++;
        // A hit: the whole previous prompt (at least) came from the cache, i.e. the conversation was restored.
        const restored = turns[k]!.cached >= turns[k - 1]!.prompt;
        if (turns[k]!.endpoint !== turns[k - 1]!.endpoint) {
          moved++;
          if (!restored) missesAfterMove++;
          continue;
        }
        expect(turns[k]!.cached).toBeGreaterThanOrEqual(turns[k - 1]!.prompt);
        if (restored) hits++;
      }
    }
    const failedOver = attempts.filter((a) => !a.ok).length;
    const failureKinds = [...new Set(attempts.filter((a) => !a.ok).map((a) => (a.error ?? '').replace(/^https?:\/\/[^ ]+:? ?/, '').replace(/\d+/g, 'N').slice(0, 60)))];
    const movedTurns = new Set<(typeof log)[number]>();
    for (const turns of bySession.values()) for (let k = 1; k < turns.length; k++) if (turns[k]!.endpoint !== turns[k - 1]!.endpoint) movedTurns.add(turns[k]!);
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    const normalMs = median(log.filter((l) => l.turn > 1 && !movedTurns.has(l)).map((l) => l.ms));
    const movedMs = median([...movedTurns].map((l) => l.ms));
    const stats = client.stats();
    console.log(
      `[remote fleet] ${SESSIONS} sessions x ${TURNS} turns in ${wallMs.toFixed(0)} ms; replica killed after ${killedAt} turns; ` +
        `affinity: ${hits}/${later} later turns hit the cache (${((100 * hits) / later).toFixed(1)}%), ${later - moved} stayed on their replica; ` +
        `${victims.size} sessions on the killed replica, ${moved} moved (${missesAfterMove} cache misses), ${failedOver} failed attempts retried elsewhere, ` +
        `client failovers ${stats.failovers}; errors surfaced: 0; messages: ${sessions.reduce((n, s) => n + s.messages.length, 0)}; ` +
        `median turn ${normalMs.toFixed(1)} ms on the same replica, ${movedMs.toFixed(1)} ms for a turn that moved (failover + cache miss); failures seen: ${JSON.stringify(failureKinds)}`,
    );
    expect(moved).toBeLessThanOrEqual(victims.size);
    expect(missesAfterMove).toBe(moved);
    expect(hits + moved).toBe(later);
    expect(stats.endpoints.find((e) => e.url === victim)!.healthy).toBe(false);

    // The replica comes back on its address: a health check marks it up and its sessions return to it.
    const port = Number(new URL(victim).port);
    servers[1] = await createServer(models[1]!, { modelName: 'tiny' });
    await servers[1].listen(port, '127.0.0.1');
    await client.checkHealth();
    expect(client.stats().endpoints.every((e) => e.healthy)).toBe(true);
    for (const id of victims) expect(client.endpointFor(id)).toBe(victim);
    const back = sessions.find((s) => victims.has(s.sessionId))!;
    const r = await back.send('Back home?', { maxTokens: 4, temperature: 0 });
    expect(attempts.at(-1)).toMatchObject({ endpoint: victim, sessionId: back.sessionId, ok: true });
    expect(r.usage.cachedTokens).toBeLessThan(r.usage.promptTokens); // a fresh replica: the conversation is recomputed

    // The control: the same conversations sent statelessly without a session id land on a random replica.
    let controlLater = 0;
    let controlHits = 0;
    await Promise.all(
      Array.from({ length: SESSIONS }, async (_, i) => {
        const messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }> = [{ role: 'system', content: `Control conversation ${i}.` }];
        let prevPrompt = 0;
        for (let turn = 1; turn <= 3; turn++) {
          messages.push({ role: 'user', content: `Turn ${turn}` });
          const c = await client.generate({ messages, reasoning: false, maxTokens: 4, temperature: 0 });
          if (turn > 1) {
            controlLater++;
            if (c.usage.cachedTokens >= prevPrompt) controlHits++;
          }
          prevPrompt = c.usage.promptTokens;
          messages.push({ role: 'assistant', content: c.text });
        }
      }),
    );
    console.log(`[remote fleet] control without session ids (random replica per request): ${controlHits}/${controlLater} later turns restored the previous prompt (${((100 * controlHits) / controlLater).toFixed(1)}%)`);
    expect(controlHits).toBeLessThan(controlLater);
    await client.close();
  });
});
