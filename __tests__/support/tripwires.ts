/**
 * Installed for every test file: any unhandled rejection or uncaught exception while the file
 * runs fails it. The library promises that neither ever comes from a task or an error response.
 */
const tripped: Array<{ kind: string; value: unknown }> = [];
const onRejection = (value: unknown) => tripped.push({ kind: 'unhandledRejection', value });
const onException = (value: unknown) => tripped.push({ kind: 'uncaughtException', value });

beforeAll(() => {
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
});

afterAll(async () => {
  // Rejections are reported after the microtask queue drains; let one macrotask pass first.
  await new Promise((resolve) => setImmediate(resolve));
  process.off('unhandledRejection', onRejection);
  process.off('uncaughtException', onException);
  expect(tripped).toEqual([]);
});
