/**
 * Minimal stand-ins for Express's req and res, enough for the public middleware API: a response
 * that on-finished already sees as finished (so tasks start on the next setImmediate), and a
 * request with the fields the suite reads. Used where a real request would cost more than what is
 * measured (the queue micro-benchmark, the heap per pending task).
 */
import type { NextFunction, Request, Response } from 'express';

export interface FakeExchange {
  req: Request;
  res: Response;
}

export function fakeExchange(): FakeExchange {
  const req = { method: 'GET', url: '/', originalUrl: '/', headers: {} };
  const res = {
    locals: {},
    statusCode: 200,
    finished: true,
    writableFinished: true,
    headersSent: true,
  };
  return { req: req as unknown as Request, res: res as unknown as Response };
}

export const next: NextFunction = () => undefined;
