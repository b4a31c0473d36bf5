/**
 * Argument checks, done in JS before native code sees anything. Each failure names the parameter, what
 * was expected and what was given.
 */
import { InvalidArgumentError } from './errors.js';

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return `a value of type ${typeof value}`;
}

export function invalid(name: string, expected: string, actual: unknown): InvalidArgumentError {
  return new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${name} must be ${expected}, got ${show(actual)}`);
}

export function assertObject(name: string, value: unknown): asserts value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(name, 'an object', value);
}

export function assertKnownKeys(name: string, value: object, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentError('ERR_INVALID_ARGUMENT', `${name} has an unknown option "${key}" (known: ${allowed.join(', ')})`);
    }
  }
}

export function optionalInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(name, `an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}]`, value);
  }
  return value;
}

export function optionalNumber(name: string, value: unknown, check: (v: number) => boolean, expected: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || !check(value)) throw invalid(name, expected, value);
  return value;
}

export function optionalString(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalid(name, 'a string', value);
  return value;
}

export function optionalSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw invalid(name, 'an AbortSignal', value);
  return value;
}

/** Token ids: a non-empty array of integers in [0, vocabSize). */
export function tokenIds(name: string, value: unknown, vocabSize: number): Int32Array {
  if (!Array.isArray(value) && !(value instanceof Int32Array) && !(value instanceof Uint32Array)) {
    throw invalid(name, 'an array of token ids', value);
  }
  const ids = Array.from(value as ArrayLike<unknown>);
  if (ids.length === 0) throw new InvalidArgumentError('ERR_EMPTY_PROMPT', `${name} is empty: at least one token is needed`);
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (typeof id !== 'number' || !Number.isInteger(id)) throw invalid(`${name}[${i}]`, 'an integer token id', id);
    if (id < 0 || id >= vocabSize) {
      throw new InvalidArgumentError('ERR_TOKEN_OUT_OF_RANGE', `${name}[${i}] = ${id} is out of range: token ids must be in [0, ${vocabSize})`);
    }
    out[i] = id;
  }
  return out;
}
