/**
 * A worker process with its own OpenTelemetry SDK, for telemetry-durable.test.ts: run as
 * `node -r ts-node/register/transpile-only` with REDIS_URL and QUEUE_NAME. Each run of a task is
 * one JSON line on stdout with the span active in the task, recorded or not (an unsampled span is
 * never exported: this is how it is seen). When a job completes it writes, as one line, the job's
 * data, every span it has ended and the library's metric points.
 */
import { trace } from '@opentelemetry/api';
import { startWorker } from '../../lib/bullmq';
import { TASKS, runs, type RunEvent } from './durable-tasks';
import { registerOtel } from './otel';

const otel = registerOtel();
const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);

const worker = startWorker({
  connection: { url: process.env.REDIS_URL! },
  queueName: process.env.QUEUE_NAME!,
  tasks: TASKS,
});
worker.worker.once('ready', () => say({ event: 'ready' }));
// Emitted from inside the task, so the active span is its attempt span.
runs.on('run', (run: RunEvent) => {
  const span = trace.getActiveSpan();
  say({
    ...run,
    event: 'run',
    ran: run.event,
    activeSpan: span && { ...span.spanContext(), recording: span.isRecording() },
  });
});
worker.worker.on('completed', (job) => {
  void otel.collect().then((metrics) =>
    say({
      event: 'completed',
      jobId: job.id,
      data: job.data,
      spans: otel.spans().map((span) => ({
        name: span.name,
        kind: span.kind,
        traceId: span.spanContext().traceId,
        spanId: span.spanContext().spanId,
        parentSpanId: span.parentSpanContext?.spanId,
        attributes: span.attributes,
        status: span.status,
      })),
      metrics: metrics.map((metric) => ({
        name: metric.descriptor.name,
        points: metric.dataPoints.map((point) => ({
          attributes: point.attributes,
          value:
            typeof point.value === 'number'
              ? point.value
              : (point.value as { count: number }).count,
        })),
      })),
    }),
  );
});
process.once('SIGTERM', () => void worker.close().then(() => process.exit(0)));
