import { throttledWarn, type Logger } from "../log";
import { AppError, StorageUnavailableError, type Err } from "../protocol";

const unavailableWarnings = new WeakMap<Logger, ReturnType<typeof throttledWarn>>();

/** Turns any failure into a protocol error; internals never reach a client. */
export function toErr(err: unknown, log: Logger, context: Record<string, unknown>): Err {
  if (err instanceof AppError) {
    if (err instanceof StorageUnavailableError) {
      // During an outage every request fails alike: one line per few seconds says it all.
      let warn = unavailableWarnings.get(log);
      if (!warn) unavailableWarnings.set(log, (warn = throttledWarn(log)));
      warn({ ...context, err: err.cause }, "storage unavailable");
    }
    return { ok: false, error: { code: err.code, message: err.message } };
  }
  log.error({ ...context, err }, "unexpected error in handler");
  return { ok: false, error: { code: "INTERNAL", message: "internal error" } };
}
