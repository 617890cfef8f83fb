import { InvalidToken, type TokenVerifier } from "../auth/TokenVerifier";
import type { Logger } from "../log";
import { DEVICE_ID, isUserId } from "../protocol";
import type { TicksSocket } from "./types";

type ExtendedError = Error & { data?: unknown };

const refused = (): ExtendedError => Object.assign(new Error("unauthorized"), { data: { code: "UNAUTHORIZED" } });

/**
 * Handshake middleware: a JWT (`sub` = user id) checked by `verifier` or, in dev mode only
 * (verifier null), `auth.userId` taken on trust. Every refusal looks the same to the client:
 * `connect_error` "unauthorized"; why a token failed goes only to the debug log.
 */
export function authMiddleware(verifier: TokenVerifier | null, log: Logger) {
  return async (socket: TicksSocket, next: (err?: ExtendedError) => void): Promise<void> => {
    const given = (socket.handshake.auth ?? {}) as Record<string, unknown>;
    const deviceId = given.deviceId;
    if (deviceId !== undefined && (typeof deviceId !== "string" || !DEVICE_ID.test(deviceId))) return next(refused());
    let userId: unknown;
    let expiresAt: number | null = null;
    if (verifier) {
      try {
        ({ userId, expiresAt } = await verifier.verify(given.token));
      } catch (err) {
        if (err instanceof InvalidToken) log.debug({ reason: err.reason }, "handshake token refused");
        else log.warn({ err }, "token verification failed unexpectedly");
        return next(refused());
      }
    } else {
      userId = given.userId;
    }
    if (!isUserId(userId)) return next(refused());
    socket.data.userId = userId;
    socket.data.deviceId = (deviceId as string | undefined) ?? null;
    socket.data.tokenExpiresAt = expiresAt;
    next();
  };
}
