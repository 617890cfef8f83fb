import { errors as joseErrors, jwtVerify } from "jose";
import type { Config } from "../config";
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
 * Handshake middleware: a JWT (HS256, `sub` = user id) or, in dev mode only, `auth.userId`
 * taken on trust. Every credential problem looks the same to the client: `connect_error`
 * "unauthorized", nothing about why. Valid credentials with a malformed `deviceId` get
 * "invalid deviceId" (BAD_REQUEST), a mistake the developer can fix.
 */
export function authMiddleware(auth: Config["auth"], log: Logger) {
  const key = auth.mode === "jwt" ? new TextEncoder().encode(auth.secret) : null;
  return async (socket: TicksSocket, next: (err?: ExtendedError) => void): Promise<void> => {
    const given = (socket.handshake.auth ?? {}) as Record<string, unknown>;
    let userId: unknown;
    if (key) {
      if (typeof given.token !== "string") return next(refused());
      try {
        const { payload } = await jwtVerify(given.token, key, { algorithms: ["HS256"] });
        userId = payload.sub;
      } catch (err) {
        if (!(err instanceof joseErrors.JOSEError)) log.warn({ err }, "token verification failed unexpectedly");
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
    next();
  };
}
