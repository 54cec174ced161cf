/**
 * The winston logger every benchmarked app logs to: level 'error', JSON format, and a transport
 * that drops what it is given. Records are still built and formatted (winston's own cost is
 * measured), but nothing is written, so the console's cost is not.
 */
import winston from 'winston';
import Transport from 'winston-transport';

class NullTransport extends Transport {
  override log(_info: unknown, callback: () => void): void {
    callback();
  }
}

export function silentLogger(): winston.Logger {
  return winston.createLogger({
    level: 'error',
    format: winston.format.json(),
    transports: [new NullTransport()],
  });
}

/** The `.catch()` handler of the hand-written references: one log line per failed task. */
export function taskFailureLog(logger: winston.Logger): (error: unknown) => void {
  return (error) => logger.error('background task failed', { error });
}
