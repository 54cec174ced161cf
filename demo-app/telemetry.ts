/**
 * The demo's OpenTelemetry setup, as an application (never the library) does it: Prometheus
 * metrics through the SDK on METRICS_PORT (default 9464), spans printed to the console with
 * OTEL_TRACES_EXPORTER=console, and a span per request so that the console shows each request
 * and its background tasks in one trace. A real app would use @opentelemetry/instrumentation-http
 * for the request spans; this middleware stands in for it, to keep the demo to two commands.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind, context, metrics, trace } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  ConsoleSpanExporter,
  NodeTracerProvider,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-node';
import type { RequestHandler } from 'express';
import onFinished from 'on-finished';

export interface DemoTelemetry {
  /** Where Prometheus scrapes. */
  metricsUrl: string;
  /** Flushes the spans still held and closes the metrics endpoint. */
  shutdown(): Promise<void>;
}

/**
 * Registers the SDK: the metrics endpoint always, on `metricsPort` (0 takes a free port; the
 * result names the one it got), and the console span exporter when asked for. Rejects when the
 * port cannot be had.
 */
export async function startTelemetry(host: string, metricsPort: number): Promise<DemoTelemetry> {
  // The exporter's own server hides the port it got: serve its handler from a server of ours.
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const resource = resourceFromAttributes({ 'service.name': 'express-background-tasks-demo' });
  const meterProvider = new MeterProvider({ resource, readers: [prometheus] });
  metrics.setGlobalMeterProvider(meterProvider);
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') prometheus.getMetricsRequestHandler(req, res);
    else res.writeHead(404).end('Not found: try /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(metricsPort, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  let tracerProvider: NodeTracerProvider | undefined;
  if (process.env.OTEL_TRACES_EXPORTER === 'console') {
    tracerProvider = new NodeTracerProvider({
      resource,
      spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())],
    });
    tracerProvider.register();
  }
  return {
    metricsUrl: `http://${host}:${port}/metrics`,
    async shutdown() {
      server.close();
      await Promise.all([meterProvider.shutdown(), tracerProvider?.shutdown()]);
    },
  };
}

/** Runs the rest of each request inside a SERVER span, ended when the response has finished. */
export const traceRequests: RequestHandler = (req, res, next) => {
  const span = trace
    .getTracer('demo-app')
    .startSpan(`${req.method} ${req.path}`, { kind: SpanKind.SERVER });
  onFinished(res, () => span.end());
  context.with(trace.setSpan(context.active(), span), next);
};
