/**
 * Imported first by every process that measures: ts-node installs source-map-support, which
 * rewrites every `error.stack` through the source maps (about 40 µs per read). Compiled
 * JavaScript in production pays nothing of the kind, so the benchmark restores V8's own stack
 * formatting (stack frames then point into the transpiled code, which no result depends on).
 */
delete (Error as { prepareStackTrace?: unknown }).prepareStackTrace;
