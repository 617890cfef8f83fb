import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import type { ReadinessCheck } from "../readiness";

/** Answers and returns true when `path` is its own (it may take any method). */
export type Route = (req: IncomingMessage, res: ServerResponse, path: string) => boolean;

/**
 * The plain HTTP endpoints. Socket.IO handles its own path before this is reached;
 * `routes` (media) before the GET-only ones.
 */
export function httpHandler(checks: ReadinessCheck[], metrics: Metrics, log: Logger, assets?: Route, routes: Route[] = []) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0]!;
    for (const route of routes) if (route(req, res, path)) return;
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, "method not allowed\n");
    if (path === "/healthz") return send(res, 200, "ok\n");
    if (path === "/readyz") {
      void ready(checks, log).then((failed) =>
        failed.length === 0 ? send(res, 200, "ready\n") : send(res, 503, `not ready: ${failed.join(", ")}\n`),
      );
      return;
    }
    if (path === "/metrics") {
      void metrics.registry.metrics().then(
        (text) => send(res, 200, text, metrics.registry.contentType),
        (err) => {
          log.error({ err }, "metrics failed");
          send(res, 500, "metrics failed\n");
        },
      );
      return;
    }
    if (assets?.(req, res, path)) return;
    send(res, 404, "not found\n");
  };
}

const CHECK_TIMEOUT_MS = 2000;

async function ready(checks: ReadinessCheck[], log: Logger): Promise<string[]> {
  const results = await Promise.all(
    checks.map(async ({ name, check }) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("timed out")), CHECK_TIMEOUT_MS);
      });
      try {
        await Promise.race([check(), timeout]);
        return null;
      } catch (err) {
        log.warn({ err, check: name }, "readiness check failed");
        return name;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return results.filter((n): n is string => n !== null);
}

function send(res: ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  if (res.headersSent) return;
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  res.end(body);
}
