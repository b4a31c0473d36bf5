#!/usr/bin/env node
// The README's package figures (packed and unpacked size, the prebuilt binary's size), measured, not typed
// in. scripts/pack-check.sh measures them on the package it builds and calls this script with what it
// measured; `npm run readme:figures` runs pack-check and writes them into README.md.
//
//   node scripts/readme-figures.mjs --pack-json PACK.json --binary prebuilds/linux-x64/X.node [--readme README.md] [--write | --check]
//
// PACK.json is `npm pack --json` output. The figures live in README.md between
// <!-- figures:package --> and <!-- /figures:package -->. Default: print the sentence and whether README.md
// has it; --write replaces it; --check exits 1 when README.md differs.
import { readFileSync, statSync, writeFileSync } from 'node:fs';

const START = '<!-- figures:package -->';
const END = '<!-- /figures:package -->';

/** Bytes as the README states them: MB (10^6 bytes), two decimals below 1 MB, one above. */
export function mb(bytes) {
  const v = bytes / 1e6;
  return `${v >= 1 ? v.toFixed(1) : v.toFixed(2)} MB`;
}

/** The sentence between the markers. */
export function figuresSentence({ packed, unpacked, binary }) {
  return (
    `The package is ${mb(packed)} (${mb(unpacked)} unpacked): \`dist/\` (ESM + CommonJS + \`.d.ts\`, no source maps), the\n` +
    `stripped prebuilt binary (${mb(binary)}), and \`csrc/\`, \`binding.gyp\`, \`CMakeLists.txt\` for the fallback build.`
  );
}

/** README text with the figures replaced; throws when the markers are missing. */
export function withFigures(readme, sentence) {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error(`README has no ${START} … ${END} block`);
  return `${readme.slice(0, a + START.length)}\n${sentence}\n${readme.slice(b)}`;
}

function main(argv) {
  const arg = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const packJson = arg('--pack-json');
  const binary = arg('--binary');
  const readmePath = arg('--readme') ?? new URL('../README.md', import.meta.url).pathname;
  if (!packJson || !binary) {
    process.stderr.write('usage: readme-figures.mjs --pack-json PACK.json --binary FILE.node [--readme README.md] [--write | --check]\n');
    return 2;
  }
  const [pack] = JSON.parse(readFileSync(packJson, 'utf8'));
  const sentence = figuresSentence({ packed: pack.size, unpacked: pack.unpackedSize, binary: statSync(binary).size });
  const readme = readFileSync(readmePath, 'utf8');
  const updated = withFigures(readme, sentence);
  const current = updated === readme;
  if (argv.includes('--write')) {
    if (!current) writeFileSync(readmePath, updated);
    process.stdout.write(`readme-figures: ${current ? 'README.md already states' : 'wrote into README.md'}: ${sentence.replace(/\n/g, ' ')}\n`);
    return 0;
  }
  process.stdout.write(`readme-figures: measured: ${sentence.replace(/\n/g, ' ')}\nreadme-figures: README.md ${current ? 'is up to date' : 'is stale (npm run readme:figures writes it)'}\n`);
  return argv.includes('--check') && !current ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
