/**
 * The file: URL of this module: the one value that the ESM and CommonJS builds compute differently.
 * ESM (dist/, and lib/ under tsx) reads import.meta.url. The CommonJS build (scripts/build-cjs.mjs)
 * compiles this same file and then replaces its `import.meta.url` (a syntax error in CommonJS) with
 * `require('node:url').pathToFileURL(__filename).href`; it fails if it cannot find that expression.
 * Keep every other module free of import.meta and import from here instead.
 */
// @ts-ignore TS1343 under the CommonJS build's `module: commonjs`, whose output of this line is replaced
export const moduleUrl: string = import.meta.url;
