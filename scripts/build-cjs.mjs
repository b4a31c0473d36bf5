#!/usr/bin/env node
// Builds the CommonJS entry point, dist/cjs, from the same sources as the ESM build (dist/):
//   1. tsc -p tsconfig.cjs.json (module: commonjs, .d.ts included);
//   2. dist/cjs/package.json = {"type": "commonjs"}, so Node and TypeScript read dist/cjs/*.js and
//      *.d.ts as CommonJS although the package root says "type": "module";
//   3. in dist/cjs/module-url.js, the one ESM-only expression (import.meta.url) becomes its CommonJS
//      equivalent. Fails if that expression is not found exactly once, or if any other file of
//      dist/cjs still mentions import.meta.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const out = path.join(root, 'dist', 'cjs');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(out, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.cjs.json')], { stdio: 'inherit', cwd: root });
writeFileSync(path.join(out, 'package.json'), JSON.stringify({ type: 'commonjs' }, null, 2) + '\n');

const file = path.join(out, 'module-url.js');
const statement = /^exports\.moduleUrl = import\.meta\.url;$/m;
const src = readFileSync(file, 'utf8');
if (!statement.test(src)) throw new Error(`${file}: expected the line "exports.moduleUrl = import.meta.url;" (has lib/module-url.ts changed?)`);
writeFileSync(file, src.replace(statement, "exports.moduleUrl = require('node:url').pathToFileURL(__filename).href;"));

// Any import.meta left in code (comments aside) would be a SyntaxError when required.
const isCode = (line) => !/^\s*(\/\/|\/\*|\*)/.test(line);
const left = readdirSync(out, { recursive: true })
  .filter((f) => f.endsWith('.js'))
  .filter((f) => readFileSync(path.join(out, f), 'utf8').split('\n').some((l) => isCode(l) && l.includes('import.meta')));
if (left.length) throw new Error(`import.meta in the CommonJS build: ${left.join(', ')} (use lib/module-url.ts)`);
console.log(`built ${path.relative(root, out)} (CommonJS)`);
