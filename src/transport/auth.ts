import { InvalidToken, type TokenVerifier } from "../auth/TokenVerifier";
import type { Logger } from "../log";
import { DEVICE_ID, isUserId } from "../protocol";
import type { TicksSocket } from "./types";

type ExtendedError = Error & { data?: unknown };

const refused = (): ExtendedError => Object.assign(new Error("unauthorized"), { data: { code: "UNAUTHORIZED" } });

/** Only once the credentials hold: telling a stranger what else was wrong would help nobody. */
const badDevice = (): ExtendedError =>
  Object.assign(new Error("invalid deviceId"), {
    data: { code: "BAD_REQUEST", message: "deviceId must be 1-64 characters of A-Z a-z 0-9 . _ -" },
  });

/**
 * Handshake middleware: a JWT (`sub` = user id) checked by `verifier` or, in dev mode only
 * (verifier null), `auth.userId` taken on trust. Every credential problem looks the same to
 * the client: `connect_error` "unauthorized", nothing about why (the reason goes to the debug
 * log). Valid credentials with a malformed `deviceId` get "invalid deviceId" (BAD_REQUEST),
 * a mistake the developer can fix.
 */
export function authMiddleware(verifier: TokenVerifier | null, log: Logger) {
  return async (socket: TicksSocket, next: (err?: ExtendedError) => void): Promise<void> => {
    const given = (socket.handshake.auth ?? {}) as Record<string, unknown>;
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
    const deviceId = given.deviceId;
    if (deviceId !== undefined && (typeof deviceId !== "string" || !DEVICE_ID.test(deviceId))) return next(badDevice());
    socket.data.userId = userId;
    socket.data.deviceId = (deviceId as string | undefined) ?? null;
    socket.data.tokenExpiresAt = expiresAt;
    next();
  };
}
