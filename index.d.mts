/**
 * The types of the ESM entry (`import`): the declarations of index.d.ts, which TypeScript reads
 * as CommonJS (this package has no "type": "module") and so cannot describe `js/index.mjs` itself.
 */
export * from './index.js';
