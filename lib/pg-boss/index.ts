/**
 * express-background-tasks/pg-boss: durable tasks on pg-boss and PostgreSQL. The web process hands
 * its defined tasks to `pgBossDurable()`, or writes them in its own transaction with
 * `addInTransaction()` and runs them right after the response; `startWorker()` runs the rest in
 * other processes. Loaded only by this entry point, so that the main one never loads pg-boss, an
 * optional peer dependency: './peers' comes first and throws a helpful Error when it is missing or
 * when this Node cannot load it.
 */
import './peers';
export {
  pgBossDurable,
  type PgBossDurable,
  type PgBossDurableOptions,
  type PgBossJobData,
} from './producer';
export {
  startWorker,
  type AnyDefinedTask,
  type DurableWorker,
  type StartWorkerOptions,
} from './worker';
export type { PgBossLocation } from './connection';
