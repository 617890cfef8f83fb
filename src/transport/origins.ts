import type { IncomingMessage } from "node:http";
import type { ServerOptions } from "socket.io";
import type { OriginPolicy } from "../config";
import type { Logger } from "../log";

/** What a refused handshake answers (HTTP 403 for long-polling, 400 for a WebSocket upgrade). */
const ORIGIN_REFUSED = "origin not allowed";

/**
 * CORS_ORIGINS as Socket.IO options. `cors` answers the browser's long-polling requests with
 * the CORS headers an allowed origin needs; `allowRequest` refuses, at the handshake, any
 * request (polling or WebSocket) whose Origin header names an origin the policy does not
 * allow. A request without an Origin (native apps, servers, same-origin polling GETs) and a
 * page served by this very host always pass: origins protect browsers, not the server.
 */
export function originOptions(policy: OriginPolicy, log: Logger): Pick<ServerOptions, "cors" | "allowRequest"> {
  const listed = (origin: string) => policy.allow === "any" || (policy.allow === "list" && policy.origins.includes(origin));
  return {
    cors: {
      // Reflects an allowed origin; gives no CORS headers to any other, so the browser blocks it.
      origin: (origin, callback) => callback(null, origin !== undefined && listed(origin)),
      methods: ["GET", "POST"],
    },
    allowRequest: (req, callback) => {
      const origin = req.headers.origin;
      if (origin === undefined || listed(origin) || sameOrigin(req, origin)) return callback(null, true);
      log.info({ origin }, "handshake refused: origin not allowed (CORS_ORIGINS)");
      callback(ORIGIN_REFUSED, false);
    },
  };
}

/** The page was served by the host it connects to (behind a proxy: the Host it forwards). */
function sameOrigin(req: IncomingMessage, origin: string): boolean {
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}
