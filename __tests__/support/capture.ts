/**
 * A real winston logger whose transport keeps every record, with the JSON line that winston's
 * `json()` format made of it, so tests can assert both the fields and the serialised form.
 */
import winston from 'winston';
import Transport from 'winston-transport';
import type { Logger } from 'winston';

const MESSAGE = Symbol.for('message');

export interface LogRecord {
  level: string;
  message: string;
  /** The serialised line, as a file or console transport would write it. */
  line: string;
  [field: string]: unknown;
}

export interface CapturedLogger {
  logger: Logger;
  records: LogRecord[];
  /** The records with this message, in order. */
  find(message: string): LogRecord[];
}

export function captureLogger(level = 'debug'): CapturedLogger {
  const records: LogRecord[] = [];
  class Capture extends Transport {
    override log(info: Record<string | symbol, unknown>, callback: () => void): void {
      records.push({ ...(info as unknown as LogRecord), line: String(info[MESSAGE]) });
      callback();
    }
  }
  const logger = winston.createLogger({
    level,
    format: winston.format.json(),
    transports: [new Capture()],
  });
  return {
    logger,
    records,
    find: (message) => records.filter((record) => record.message === message),
  };
}
