/**
 * A Jest transformer for the ES-module-only packages the pg-boss tests load in the test process
 * (pg-boss 12, and serialize-error and non-error that it loads): their import/export syntax made CommonJS with TypeScript's
 * transpileModule, nothing else changed. Node loads them with require(esm) from 22.12 on, but
 * Jest's own module registry does so only on Node 24.9 or later. Child processes (the web process
 * and the demo in the tests) load them with Node's own require(esm), untransformed.
 */
/* global require, module */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS file: Jest loads it with require
const ts = require('typescript');

module.exports = {
  process(source, filename) {
    const { outputText } = ts.transpileModule(source, {
      fileName: filename,
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
        allowJs: true,
      },
    });
    return { code: outputText };
  },
};
