import pino from "pino";

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid } });
}

/**
 * Logs a warning at most once per `intervalMs` per message, with how many were held back:
 * an outage makes every request fail the same way, and the log must stay readable.
 */
export function throttledWarn(log: Logger, intervalMs = 5000) {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (fields: Record<string, unknown>, msg: string): void => {
    const now = Date.now();
    const entry = last.get(msg);
    if (entry && now - entry.at < intervalMs) {
      entry.suppressed++;
      return;
    }
    log.warn({ ...fields, ...(entry?.suppressed ? { suppressed: entry.suppressed } : {}) }, msg);
    last.set(msg, { at: now, suppressed: 0 });
  };
}
