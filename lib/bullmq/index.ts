/**
 * express-background-tasks/bullmq: durable tasks on BullMQ and Redis. The web process hands its
 * defined tasks to `bullmqDurable()`; `startWorker()` runs them in other processes. Loaded only
 * by this entry point, so that the main one never loads bullmq or ioredis. Those two are optional
 * peer dependencies: './peers' comes first and throws a helpful Error when either is missing.
 */
import './peers';
export {
  bullmqDurable,
  type BullmqDurable,
  type BullmqDurableOptions,
  type DurableJobData,
  type KeepJobsOption,
} from './producer';
export {
  startWorker,
  type AnyDefinedTask,
  type DurableWorker,
  type StartWorkerOptions,
} from './worker';
export type { QueueLocation, RedisConnectionOptions } from './connection';
