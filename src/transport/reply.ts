import type { Logger } from "../log";
import { AppError, StorageUnavailableError, type Err } from "../protocol";

/** Turns any failure into a protocol error; internals never reach a client. */
export function toErr(err: unknown, log: Logger, context: Record<string, unknown>): Err {
  if (err instanceof AppError) {
    if (err instanceof StorageUnavailableError) log.warn({ ...context, err: err.cause }, "storage unavailable");
    return { ok: false, error: { code: err.code, message: err.message } };
  }
  log.error({ ...context, err }, "unexpected error in handler");
  return { ok: false, error: { code: "INTERNAL", message: "internal error" } };
}
