/**
 * The CLI's progress bars for loadModel's onProgress (cli-progress): a download bar in bytes with speed and
 * ETA, then a loading bar over the load phases (plan, tokenizer, engine). Both are real bars: the download
 * bar moves with the bytes on disk; the loading bar advances when a phase finishes and names the phase
 * running, with the elapsed time (the native loader reports nothing from inside its phase, so the bar does
 * not pretend to move within it).
 *
 * Shown on a terminal for every download and for loads of checkpoints of 256 MiB or more;
 * NEMOTRON_NODE_PROGRESS=1 shows them always (off a terminal as one line per update, every 0.5 s),
 * NEMOTRON_NODE_PROGRESS=0 never.
 */
import cliProgress from 'cli-progress';

import type { LoadProgress } from './load-progress.js';
import { formatBytes } from './memory.js';

/** Weights at least this large get a loading bar (on a terminal). */
const LOAD_BAR_MIN_BYTES = 256 * 1024 ** 2;
const WIDTH = 24;
const SPEED_WINDOW_MS = 10_000;

const PHASES = ['plan', 'tokenizer', 'load'] as const;
const PHASE_LABEL: Record<(typeof PHASES)[number], string> = {
  plan: 'reading the config, planning memory',
  tokenizer: 'reading the tokenizer',
  load: 'mapping the weights, checking tensors, building the engine',
};

function bar(fraction: number): string {
  const n = Math.max(0, Math.min(WIDTH, Math.round(fraction * WIDTH)));
  return '\u2588'.repeat(n) + '\u2591'.repeat(WIDTH - n);
}

function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--';
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export interface ProgressDisplay {
  onProgress: (p: LoadProgress) => void;
  /** Stops whatever bar is showing (call on success and on failure). */
  stop: () => void;
}

/** `label` names what is loaded (e.g. the repository or folder). */
export function progressDisplay(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressDisplay {
  const setting = process.env.NEMOTRON_NODE_PROGRESS;
  const tty = stream.isTTY === true;
  const enabled = setting === '1' || (setting !== '0' && tty);
  const forced = setting === '1';
  let current: cliProgress.SingleBar | null = null;
  let kind: 'download' | 'load' | null = null;
  let dl = { bytes: 0, total: 0, received: 0, file: '', filesDone: 0, filesTotal: 0, t0: 0 };
  // (time, bytes received) over the last SPEED_WINDOW_MS: the speed and ETA follow the recent rate.
  let samples: Array<[number, number]> = [];
  let load = { done: 0, phase: 'plan' as (typeof PHASES)[number], t0: 0, name: label };
  let loadShown = false;
  let downloaded = false;

  const make = (format: () => string, clearOnComplete = false) =>
    new cliProgress.SingleBar({
      stream,
      noTTYOutput: forced,
      notTTYSchedule: 500,
      fps: 10,
      hideCursor: tty,
      clearOnComplete: clearOnComplete || !tty, // off a terminal: no blank line after the last one
      format,
    });

  const stop = () => {
    current?.stop();
    current = null;
    kind = null;
  };

  const onProgress = (p: LoadProgress) => {
    if (!enabled) return;
    if (p.phase === 'download') {
      dl = { ...dl, bytes: p.bytes, total: p.totalBytes, received: p.receivedBytes, file: p.file, filesDone: p.filesDone, filesTotal: p.filesTotal };
      const now = Date.now();
      samples.push([now, p.receivedBytes]);
      while (samples.length > 2 && samples[1]![0] < now - SPEED_WINDOW_MS) samples.shift();
      if (kind !== 'download') {
        if (p.totalBytes === 0 || (downloaded && p.bytes >= p.totalBytes)) return; // all in the cache, or the final report
        downloaded = false;
        stop();
        dl.t0 = Date.now();
        samples = [[dl.t0, p.receivedBytes]];
        kind = 'download';
        current = make(() => {
          const [t0, r0] = samples[0] ?? [dl.t0, 0];
          const secs = (Date.now() - t0) / 1000;
          const speed = secs > 0.2 ? (dl.received - r0) / secs : 0;
          const eta = speed > 0 ? (dl.total - dl.bytes) / speed : Infinity;
          const pct = dl.total > 0 ? (100 * dl.bytes) / dl.total : 100;
          return `downloading ${label} [${bar(dl.total > 0 ? dl.bytes / dl.total : 1)}] ${pct.toFixed(0).padStart(3)}% ${formatBytes(dl.bytes)}/${formatBytes(dl.total)} ${formatBytes(speed)}/s ETA ${duration(eta)} (file ${Math.min(dl.filesDone + 1, dl.filesTotal)}/${dl.filesTotal}: ${dl.file})`;
        });
        current.start(1, 0);
      }
      current?.update(dl.total > 0 ? dl.bytes / dl.total : 1);
      if (p.filesDone === p.filesTotal && p.fraction === 1) {
        downloaded = true;
        stop();
      }
      return;
    }
    if (kind === 'download') stop();
    const i = PHASES.indexOf(p.phase);
    if (p.phase === 'plan' && p.fraction === 0) {
      load = { done: 0, phase: 'plan', t0: Date.now(), name: label };
      loadShown = false;
    }
    if (p.phase === 'plan' && p.fraction === 1 && !loadShown) {
      const big = (p.weightBytes ?? 0) >= LOAD_BAR_MIN_BYTES;
      if (forced || (tty && big)) {
        loadShown = true;
        kind = 'load';
        const weights = p.weightBytes === undefined ? '' : ` (${formatBytes(p.weightBytes)} of weights)`;
        current = make(() => `loading ${load.name}${weights} [${bar(load.done / PHASES.length)}] ${load.done}/${PHASES.length} ${load.done === PHASES.length ? 'ready' : PHASE_LABEL[load.phase]}, ${((Date.now() - load.t0) / 1000).toFixed(1)} s`, tty);
        current.start(PHASES.length, 0);
      }
    }
    load.phase = p.phase;
    load.done = p.fraction === 1 ? i + 1 : i;
    if (kind === 'load') current?.update(load.done);
    if (p.phase === 'load' && p.fraction === 1) {
      if (kind === 'load') {
        stop();
        stream.write(`loaded ${load.name} in ${((Date.now() - load.t0) / 1000).toFixed(1)} s\n`);
      }
    }
  };
  return { onProgress, stop };
}
