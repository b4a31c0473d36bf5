/**
 * The prefix cache: snapshots of sequences (native: a copy of the fixed-size Mamba state plus shared
 * references to KV blocks) keyed by the exact tokens they have seen. A new request restores the
 * longest cached prefix of its tokens and prefills only the rest. Entries are evicted least recently
 * used first while the bytes the cache holds exceed its budget; entries pinned by a chat session stay.
 */
import type { NativeEngine } from '../addon-types.js';

export interface CacheEntry {
  /** Native snapshot id. */
  readonly id: number;
  /** The tokens the snapshot has seen. */
  readonly tokens: Int32Array;
  lastUsed: number;
  pins: number;
}

export interface PrefixCacheStats {
  entries: number;
  /** Bytes held by the cache: Mamba state copies plus the KV blocks no live sequence shares. */
  bytes: number;
  budgetBytes: number;
  hits: number;
  misses: number;
  /** Prompt tokens not computed thanks to the cache. */
  tokensReused: number;
}

/** Multiplicative rolling hash of every prefix: h[i] covers tokens[0, i). */
function prefixHashes(tokens: Int32Array, upTo: number): Uint32Array {
  const h = new Uint32Array(upTo + 1);
  let x = 0x811c9dc5;
  for (let i = 0; i < upTo; i++) {
    x = (Math.imul(x ^ tokens[i]!, 0x01000193) + 0x9e3779b9) >>> 0;
    h[i + 1] = x;
  }
  return h;
}

function samePrefix(a: Int32Array, b: Int32Array, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class PrefixCache {
  private readonly byLength = new Map<number, Map<number, CacheEntry[]>>();
  private readonly entries = new Set<CacheEntry>();
  private clock = 0;
  hits = 0;
  misses = 0;
  tokensReused = 0;

  constructor(
    private readonly engine: NativeEngine,
    readonly budgetBytes: number,
  ) {}

  /** The longest entry whose tokens are a prefix of `tokens`, at most `maxLength` long; marks it used. */
  lookup(tokens: Int32Array, maxLength: number): CacheEntry | null {
    const lengths = [...this.byLength.keys()].filter((n) => n <= maxLength && n > 0).sort((a, b) => b - a);
    if (lengths.length > 0) {
      const h = prefixHashes(tokens, lengths[0]!);
      for (const n of lengths) {
        for (const e of this.byLength.get(n)!.get(h[n]!) ?? []) {
          if (samePrefix(e.tokens, tokens, n)) {
            e.lastUsed = ++this.clock;
            this.hits++;
            this.tokensReused += n;
            return e;
          }
        }
      }
    }
    this.misses++;
    return null;
  }

  /** Adds a snapshot the cache now owns. If the same tokens are cached already, the new one is dropped. */
  insert(snapshotId: number, tokens: Int32Array): CacheEntry {
    const n = tokens.length;
    const key = prefixHashes(tokens, n)[n]!;
    let bucket = this.byLength.get(n);
    if (!bucket) this.byLength.set(n, (bucket = new Map()));
    const list = bucket.get(key) ?? [];
    const existing = list.find((e) => samePrefix(e.tokens, tokens, n));
    if (existing) {
      this.engine.dropSnapshot(snapshotId);
      existing.lastUsed = ++this.clock;
      return existing;
    }
    const entry: CacheEntry = { id: snapshotId, tokens, lastUsed: ++this.clock, pins: 0 };
    list.push(entry);
    bucket.set(key, list);
    this.entries.add(entry);
    this.evict();
    return entry;
  }

  pin(entry: CacheEntry): void {
    entry.pins++;
  }

  unpin(entry: CacheEntry): void {
    entry.pins = Math.max(0, entry.pins - 1);
    this.evict();
  }

  /** Whether the entry is still cached (not evicted). */
  has(entry: CacheEntry): boolean {
    return this.entries.has(entry);
  }

  bytes(): number {
    const s = this.engine.cacheStats();
    return s.snapshotStateBytes + s.snapshotOnlyKvBlocks * s.kvBlockBytes;
  }

  /** Drops least recently used unpinned entries while the cache holds more than its budget. */
  evict(): void {
    while (this.entries.size > 0 && this.bytes() > this.budgetBytes) {
      let victim: CacheEntry | undefined;
      for (const e of this.entries) if (e.pins === 0 && (!victim || e.lastUsed < victim.lastUsed)) victim = e;
      if (!victim) return; // everything left is pinned
      this.remove(victim);
    }
  }

  clear(): void {
    for (const e of [...this.entries]) this.remove(e);
  }

  stats(): PrefixCacheStats {
    return {
      entries: this.entries.size,
      bytes: this.bytes(),
      budgetBytes: this.budgetBytes,
      hits: this.hits,
      misses: this.misses,
      tokensReused: this.tokensReused,
    };
  }

  private remove(e: CacheEntry): void {
    this.entries.delete(e);
    const n = e.tokens.length;
    const bucket = this.byLength.get(n)!;
    const key = prefixHashes(e.tokens, n)[n]!;
    const list = bucket.get(key)!.filter((x) => x !== e);
    if (list.length) bucket.set(key, list);
    else bucket.delete(key);
    if (bucket.size === 0) this.byLength.delete(n);
    this.engine.dropSnapshot(e.id);
  }
}
