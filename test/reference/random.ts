// A tiny seeded pseudo-random generator for reproducible test inputs.
//
// uniform(): mulberry32, a 32-bit generator; returns a float in [0, 1).
// normal():  standard normal deviates from the Box-Muller transform of two uniforms.
//
// Not for cryptography or statistics; only for deterministic test data.

export interface Rng {
  /** Uniform float in [0, 1). */
  uniform(): number;
  /** Standard normal (mean 0, variance 1). */
  normal(): number;
  /** Float64Array of `n` normals scaled by `scale`. */
  normalArray(n: number, scale?: number): Float64Array;
  /** Float64Array of `n` uniforms in [lo, hi). */
  uniformArray(n: number, lo?: number, hi?: number): Float64Array;
}

export function makeRng(seed: number): Rng {
  let a = seed >>> 0;

  // mulberry32
  function nextUint32(): number {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  function uniform(): number {
    return nextUint32() / 4294967296;
  }

  // Box-Muller: keeps the second deviate of each pair for the next call.
  let spare: number | null = null;
  function normal(): number {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u1 = uniform();
    while (u1 === 0) u1 = uniform(); // log(0) is -Infinity
    const u2 = uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  function normalArray(n: number, scale = 1): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = scale * normal();
    return out;
  }

  function uniformArray(n: number, lo = 0, hi = 1): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * uniform();
    return out;
  }

  return { uniform, normal, normalArray, uniformArray };
}
