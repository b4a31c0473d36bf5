/**
 * Small, fast, seeded pseudo-random generator for the tiny-model maker.
 *
 * xoshiro128** (32-bit state words, Math.imul based) seeded through splitmix32. Every tensor gets its own
 * stream derived from (seed, tensor name), so a tensor's values do not depend on which other tensors exist,
 * on their order, or on how the checkpoint is sharded. Only integer arithmetic, Math.sqrt (exact) and V8's
 * fdlibm-based Math.log are used, so the streams are reproducible across machines.
 */

/** One step of splitmix32: returns [output, nextState]. */
function splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return [z >>> 0, next];
}

/** FNV-1a over the UTF-16 code units of a string (names are ASCII). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const TWO_POW_32 = 4294967296;
const INV_TWO_POW_32 = 1 / TWO_POW_32;
const INV_TWO_POW_31 = 2 / TWO_POW_32;

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare = 0;
  private hasSpare = false;
  // The last point discPoint() drew.
  private discU = 0;
  private discV = 0;

  /**
   * @param seed any safe integer (both 32-bit halves are used)
   * @param stream extra 32-bit value selecting an independent stream (e.g. hashString(tensorName))
   */
  constructor(seed: number, stream = 0) {
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    let st = (lo ^ Math.imul(hi, 0x27d4eb2d) ^ Math.imul(stream >>> 0, 0x165667b1)) | 0;
    let out: number;
    [out, st] = splitmix32(st);
    this.s0 = out | 0;
    [out, st] = splitmix32((st ^ stream) | 0);
    this.s1 = out | 0;
    [out, st] = splitmix32((st ^ hi) | 0);
    this.s2 = out | 0;
    [out, st] = splitmix32(st);
    this.s3 = out | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is the one forbidden state
    for (let i = 0; i < 8; i++) this.nextUint32(); // decorrelate nearby seeds
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    const s0 = this.s0;
    const s1 = this.s1;
    const s2 = this.s2;
    const s3 = this.s3;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
    const t = s1 << 9;
    let n2 = s2 ^ s0;
    let n3 = s3 ^ s1;
    const n1 = s1 ^ n2;
    const n0 = s0 ^ n3;
    n2 ^= t;
    n3 = rotl(n3, 11);
    this.s0 = n0;
    this.s1 = n1;
    this.s2 = n2;
    this.s3 = n3;
    return result >>> 0;
  }

  /** Uniform double in the open interval (0, 1); never exactly 0 or 1. */
  uniform(): number {
    return (this.nextUint32() + 0.5) * INV_TWO_POW_32;
  }

  /** Uniform double in (lo, hi). */
  uniformRange(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /**
   * Standard normal N(0, 1) via the polar form of the Box-Muller transform (Marsaglia): two uniforms in the unit
   * disc give two independent normals with one log and one sqrt, no trigonometry. Both outputs are used.
   */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    const s = this.discPoint();
    const f = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = this.discV * f;
    this.hasSpare = true;
    return this.discU * f;
  }

  /** The polar method's draw: a point (discU, discV) uniform in the unit disc minus its centre; returns u² + v². */
  private discPoint(): number {
    let s: number;
    do {
      this.discU = this.nextUint32() * INV_TWO_POW_31 - 1 + INV_TWO_POW_32;
      this.discV = this.nextUint32() * INV_TWO_POW_31 - 1 + INV_TWO_POW_32;
      s = this.discU * this.discU + this.discV * this.discV;
    } while (s >= 1 || s === 0);
    return s;
  }

  /** Fills `out` with N(mean, std²) samples; the same sequence as calling normal() repeatedly. */
  fillNormal(out: Float32Array, std: number, mean = 0): void {
    const n = out.length;
    let i = 0;
    if (this.hasSpare && n > 0) {
      out[i++] = mean + std * this.spare;
      this.hasSpare = false;
    }
    for (; i + 1 < n; i += 2) {
      const s = this.discPoint();
      const f = std * Math.sqrt((-2 * Math.log(s)) / s);
      out[i] = mean + this.discU * f;
      out[i + 1] = mean + this.discV * f;
    }
    if (i < n) out[i] = mean + std * this.normal();
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
