// The read-bandwidth probe the benchmarks divide by (csrc/core/memory_bandwidth.cc).
import { describe, expect, it } from 'vitest';

import { native } from '../helpers.js';

describe('read-bandwidth probe', () => {
  it('measures a plausible rate on one and on two threads', () => {
    for (const threads of [1, 2]) {
      const gbps = native._measureReadBandwidth(64 * 1024 * 1024, threads);
      // Any machine this runs on streams more than 0.5 GB/s and less than 10 TB/s from memory.
      expect(gbps).toBeGreaterThan(0.5);
      expect(gbps).toBeLessThan(10_000);
    }
  });
  it('returns 0 for nothing to read', () => {
    expect(native._measureReadBandwidth(0, 1)).toBe(0);
    expect(native._measureReadBandwidth(100, 1)).toBe(0); // under one 256-byte line
  });
});
