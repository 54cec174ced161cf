/**
 * `notFound()`: mounted after the routes, it raises a 404 `HttpError`, so unknown routes get the
 * same plain-text response and notifiers as any other error.
 */
import type { RequestHandler } from 'express';
import createError from 'http-errors';

export function notFound(): RequestHandler {
  return function notFound(req, _res, next) {
    next(createError(404, `Cannot ${req.method} ${req.path}`));
  };
}
