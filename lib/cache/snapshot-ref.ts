/**
 * A snapshot in the engine's prefix cache (csrc/cache/prefix_cache.h), as JavaScript holds it: its id
 * and the tokens it has seen. The cache itself lives in the engine, which restores, inserts and evicts
 * inside its steps; a holder of a SnapshotRef owns one pin of it and must release it (Scheduler.pin(id,
 * -1)) when done, after which the engine may evict it.
 */
export interface SnapshotRef {
  readonly id: number;
  readonly tokens: Int32Array;
}
