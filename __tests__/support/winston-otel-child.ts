/**
 * The child process of telemetry-winston.test.ts: `@opentelemetry/instrumentation-winston` hooks
 * winston when it is required, which only a real Node process (not jest's module registry) does.
 * The SDK and the instrumentation are registered before winston (and so the library) is loaded.
 * A request queues a task that logs a line and then fails; the child prints every log record and
 * every span as JSON lines on stdout.
 */
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { WinstonInstrumentation } from '@opentelemetry/instrumentation-winston';
import { SpanKind, context, trace } from '@opentelemetry/api';
import { registerOtel } from './otel';

const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);

registerInstrumentations({
  instrumentations: [new WinstonInstrumentation({ disableLogSending: true })],
});
const otel = registerOtel();

async function main(): Promise<void> {
  const winston = await import('winston');
  const { default: Transport } = await import('winston-transport');
  const { default: express } = await import('express');
  const { default: request } = await import('supertest');
  const { backgroundTasks } = await import('../../lib');

  class Forward extends Transport {
    override log(info: Record<string, unknown>, callback: () => void): void {
      say({ event: 'log', ...info });
      callback();
    }
  }
  const logger = winston.createLogger({ transports: [new Forward()] });
  const bg = backgroundTasks({ logger });
  const app = express();
  app.use((req, res, next) => {
    const span = trace
      .getTracer('app')
      .startSpan(`${req.method} ${req.path}`, { kind: SpanKind.SERVER });
    res.on('finish', () => span.end());
    context.with(trace.setSpan(context.active(), span), next);
  });
  app.use(bg);
  app.post('/charge', (_req, res) => {
    res.locals.backgroundTasks.add(function chargeCard() {
      logger.info('charging the card');
      throw new Error('payment provider unreachable');
    });
    res.status(202).end();
  });
  await request(app).post('/charge').set('X-Request-Id', 'winston-1').expect(202);
  await bg.idle();
  for (const span of otel.spans())
    say({
      event: 'span',
      name: span.name,
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
    });
}

void main();
