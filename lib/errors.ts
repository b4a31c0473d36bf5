/**
 * Every error this library throws is a NemotronError with a stable `code`. Subclasses group the codes
 * by what the caller can do about them; match on `code` (stable) rather than on message text.
 */

export type NemotronErrorCode =
  | 'ERR_MODEL_NOT_FOUND'
  | 'ERR_INVALID_CONFIG'
  | 'ERR_UNSUPPORTED_MODEL'
  | 'ERR_INVALID_CHECKPOINT'
  | 'ERR_TENSOR_MISMATCH'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_TOKEN_OUT_OF_RANGE'
  | 'ERR_EMPTY_PROMPT'
  | 'ERR_INVALID_GRAMMAR'
  | 'ERR_CONTEXT_OVERFLOW'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_NUMERICAL'
  | 'ERR_IDLE_TIMEOUT'
  | 'ERR_ABORTED'
  | 'ERR_MODEL_CLOSED'
  | 'ERR_NATIVE_BINARY'
  | 'ERR_DEVICE_UNAVAILABLE'
  | 'ERR_CUDA_DRIVER'
  | 'ERR_DEVICE_SELF_CHECK'
  | 'ERR_TEMPLATE'
  | 'ERR_INVALID_SESSION_FILE'
  | 'ERR_DOWNLOAD'
  | 'ERR_DOWNLOAD_UNAUTHORIZED'
  | 'ERR_CHECKSUM_MISMATCH'
  | 'ERR_REMOTE'
  | 'ERR_REMOTE_UNAVAILABLE'
  | 'ERR_INTERNAL';

export class NemotronError extends Error {
  readonly code: NemotronErrorCode;
  constructor(code: NemotronErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The checkpoint on disk cannot be used: missing files, corrupt weights, config and tensors disagree. */
export class ModelLoadError extends NemotronError {}

/** The checkpoint is valid but not a model this library runs (another architecture, MoE blocks). */
export class UnsupportedModelError extends NemotronError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UNSUPPORTED_MODEL', message, options);
  }
}

/** An argument or option is invalid; the message names it, what was expected and what was given. */
export class InvalidArgumentError extends NemotronError {}

/** A sequence would grow past the context length the model was loaded with. */
export class ContextOverflowError extends NemotronError {
  constructor(message: string) {
    super('ERR_CONTEXT_OVERFLOW', message);
  }
}

/** The model was closed; no further calls are possible. */
export class ModelClosedError extends NemotronError {
  constructor() {
    super('ERR_MODEL_CLOSED', 'the model has been closed');
  }
}

/** The native addon could not be loaded. */
export class NativeBinaryError extends NemotronError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_NATIVE_BINARY', message, options);
  }
}

/**
 * A chat template could not be compiled (syntax error) or failed while rendering (it raised, or misused an
 * undefined value). The message carries the template engine's own message.
 */
export class TemplateError extends NemotronError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_TEMPLATE', message, options);
  }
}

/**
 * A saved chat session file cannot be used (or written): missing, not a session file, truncated, corrupted,
 * written by a newer version, or saved with another model. The message says what was expected and found.
 */
export class SessionFileError extends NemotronError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_INVALID_SESSION_FILE', message, options);
  }
}

/** `device: 'cuda'` was asked for, but no usable CUDA build or GPU is present. */
export class DeviceUnavailableError extends NemotronError {
  constructor(message: string, code: 'ERR_DEVICE_UNAVAILABLE' | 'ERR_CUDA_DRIVER' | 'ERR_DEVICE_SELF_CHECK' = 'ERR_DEVICE_UNAVAILABLE') {
    super(code, message);
  }
}

/**
 * `device: 'cuda'`: the NVIDIA driver is older than the CUDA binary needs (`ERR_CUDA_DRIVER`). Versions
 * are CUDA's integers (13000 = CUDA 13.0); the message names the Linux driver release to install.
 */
export class DriverTooOldError extends DeviceUnavailableError {
  readonly requiredDriverVersion: number;
  readonly driverVersion: number;
  constructor(message: string, requiredDriverVersion: number, driverVersion: number) {
    super(message, 'ERR_CUDA_DRIVER');
    this.requiredDriverVersion = requiredDriverVersion;
    this.driverVersion = driverVersion;
  }
}

/** One measured difference of the device self-check (lib/selfcheck.ts). */
export interface SelfCheckDifference {
  /** 'prefill log-probs', 'decode log-probs', 'restore', 'sampler', 'greedy tokens', ... */
  check: string;
  precision: 'exact' | 'fast';
  /** The largest |device - CPU| log-prob difference, or the number of differing tokens. */
  measured: number;
  tolerance: number;
}

/**
 * `device: 'cuda'`: the GPU gave other results than the CPU backend on the built-in tiny model before
 * serving anything (`ERR_DEVICE_SELF_CHECK`). `differences` lists every check that failed, with what was
 * measured and the tolerance.
 */
export class SelfCheckError extends DeviceUnavailableError {
  readonly differences: SelfCheckDifference[];
  constructor(message: string, differences: SelfCheckDifference[]) {
    super(message, 'ERR_DEVICE_SELF_CHECK');
    this.differences = differences;
  }
}

/**
 * A Hugging Face download failed: the hub or its file host could not be reached or answered an error
 * (`ERR_DOWNLOAD`), refused the credentials or asked for some (`ERR_DOWNLOAD_UNAUTHORIZED`: set HF_TOKEN),
 * or a file's size or LFS sha256 did not match what the hub announced (`ERR_CHECKSUM_MISMATCH`). A repository
 * or file the hub does not have is a ModelLoadError with `ERR_MODEL_NOT_FOUND`.
 */
export class DownloadError extends NemotronError {
  /** The HTTP status, when the failure was an HTTP answer. */
  readonly status: number | undefined;
  constructor(code: 'ERR_DOWNLOAD' | 'ERR_DOWNLOAD_UNAUTHORIZED' | 'ERR_CHECKSUM_MISMATCH', message: string, options?: { cause?: unknown; status?: number }) {
    super(code, message, options);
    this.status = options?.status;
  }
}

/** A bug in the library or its native engine. Please report it with the message. */
export class InternalError extends NemotronError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_INTERNAL', message, options);
  }
}

/** The model computed NaN or infinite logits: the request failed instead of sampling from garbage. */
export class NumericalError extends NemotronError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_NUMERICAL', message, options);
  }
}

/** A stream whose consumer stopped reading for longer than `idleTimeoutMs` was cancelled to free its sequence. */
export class IdleTimeoutError extends NemotronError {
  constructor(message: string) {
    super('ERR_IDLE_TIMEOUT', message);
  }
}

const LOAD_CODES = new Set<NemotronErrorCode>([
  'ERR_MODEL_NOT_FOUND',
  'ERR_INVALID_CONFIG',
  'ERR_INVALID_CHECKPOINT',
  'ERR_TENSOR_MISMATCH',
]);

const ARGUMENT_CODES = new Set<NemotronErrorCode>([
  'ERR_INVALID_ARGUMENT',
  'ERR_TOKEN_OUT_OF_RANGE',
  'ERR_EMPTY_PROMPT',
  'ERR_INVALID_GRAMMAR',
]);

/** Builds the typed error for a code; used for errors raised in native code, which carry only a code. */
export function errorFromCode(code: string, message: string, cause?: unknown): NemotronError {
  const c = code as NemotronErrorCode;
  if (LOAD_CODES.has(c)) return new ModelLoadError(c, message, { cause });
  if (ARGUMENT_CODES.has(c)) return new InvalidArgumentError(c, message, { cause });
  if (c === 'ERR_UNSUPPORTED_MODEL') return new UnsupportedModelError(message, { cause });
  if (c === 'ERR_CONTEXT_OVERFLOW') return new ContextOverflowError(message);
  if (c === 'ERR_OUT_OF_MEMORY') return new NemotronError('ERR_OUT_OF_MEMORY', message, { cause });
  if (c === 'ERR_NUMERICAL') return new NumericalError(message, { cause });
  if (c === 'ERR_MODEL_CLOSED') return new ModelClosedError();
  return new InternalError(message, { cause });
}

/** A native rejection (an Error carrying a code) as its typed error; a typed error passes through. */
export function typedError(err: unknown): NemotronError {
  if (err instanceof NemotronError) return err;
  const e = err as { code?: string; message?: string };
  return errorFromCode(e.code ?? 'ERR_INTERNAL', e.message ?? String(err), err);
}

/**
 * Throws a native rejection as its typed error with the caller's stack (`stack`: an Error made before the
 * call crossed into native code, whose own stack is a worker's). A typed error is thrown as it is.
 */
export function rethrowTyped(err: unknown, stack: Error): never {
  if (err instanceof NemotronError) throw err;
  const typed = typedError(err);
  typed.stack = `${typed.name}: ${typed.message}\n${(stack.stack ?? '').split('\n').slice(1).join('\n')}`;
  throw typed;
}
