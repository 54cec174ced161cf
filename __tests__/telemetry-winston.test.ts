/**
 * With `@opentelemetry/instrumentation-winston` on, the lines written while a task runs carry the
 * task span's `trace_id` and `span_id`: the task's own lines, and the library's line for its
 * failure, which is written inside the attempt's span. Run in a child process, where the
 * instrumentation can hook winston as it is required.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

test('a failure logged inside a task carries the task span ids', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      '-r',
      'ts-node/register/transpile-only',
      path.join(__dirname, 'support/winston-otel-child.ts'),
    ],
    { cwd: path.join(__dirname, '..') },
  );
  const events = stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, string>);
  const span = events.find((e) => e.event === 'span' && e.name === 'background task chargeCard')!;
  const logs = events.filter((e) => e.event === 'log');
  const ids = { trace_id: span.traceId, span_id: span.spanId };
  expect(logs.find((log) => log.message === 'charging the card')).toMatchObject(ids);
  expect(logs.find((log) => log.message === 'background task failed')).toMatchObject({
    ...ids,
    task: 'chargeCard',
    requestId: 'winston-1',
  });
}, 30_000);
