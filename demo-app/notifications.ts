/**
 * The demo's notifications: a line appended to a log file, as a plain function and as a named
 * task that a BullMQ worker can run on another machine.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { defineTask } from '../lib';

/** Where notifications go: `NOTIFICATION_LOG`, else a file under the OS temp directory. */
export function notificationLog(): string {
  return (
    process.env.NOTIFICATION_LOG ||
    path.join(tmpdir(), 'express-background-tasks-demo', 'notifications.log')
  );
}

export async function writeNotification(email: string, message: string): Promise<void> {
  const file = notificationLog();
  await mkdir(path.dirname(file), { recursive: true });
  await appendFile(file, `notification for ${email}: ${message}\n`);
}

/** The same work as a defined task: in-process by default, on BullMQ when the demo runs with REDIS_URL. */
export const sendNotification = defineTask(
  'send-notification',
  ({ email, message }: { email: string; message: string }) => writeNotification(email, message),
  { retries: 3, timeoutMs: 10_000 },
);

/** An order's receipt: written in the order's own transaction with `addInTransaction()` (see orders.ts). */
export const sendReceipt = defineTask(
  'send-receipt',
  ({ orderId, email }: { orderId: number; email: string }) =>
    writeNotification(email, `receipt for order ${orderId}`),
  { retries: 3, timeoutMs: 10_000 },
);
