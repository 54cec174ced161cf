/** express-background-tasks: work that runs after the response, with failures isolated and logged. */
export { backgroundTasks, type BackgroundTasksMiddleware, type TaskControls } from './middleware';
export { BackgroundTasks } from './queue';
export {
  httpErrorHandler,
  type HttpErrorHandler,
  type HttpErrorHandlerOptions,
  type Notifier,
} from './error-handler';
export type { ErrorOverride, OverrideMatch } from './error-overrides';
export { notFound } from './not-found';
export { defineTask, type DefinedTask, type DefineTaskOptions } from './define-task';
export { TaskTimeoutError, TaskAbandonedError } from './attempt';
export type { DrainOptions } from './runner';
export { closeLogger, type CloseLoggerOptions } from './logging';
export { LOG_MESSAGES, type LogLevel } from './log-messages';
export { BACKGROUND_TASKS_DEFAULTS, type BackgroundTasksOptions } from './options';
export type {
  CommitWatcher,
  DurableJob,
  DurableQueue,
  ExecuteSqlClient,
  InsertedJob,
  QueryClient,
  TransactionClient,
  TransactionalQueue,
} from './durable';
export type {
  BackgroundTasksStats,
  TaskCounts,
  DrainResult,
  TaskContext,
  TaskFailure,
  TaskObject,
  TaskPolicy,
  TaskRequest,
} from './types';
