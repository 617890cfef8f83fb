import { io, type Socket } from "socket.io-client";

export type HandshakeOutcome =
  | { connected: true; socket: Socket }
  | { connected: false; error: Error & { data?: unknown } };

/**
 * Tries one handshake with exactly the `auth` object given (the Device helper always adds a
 * userId or a token, which handshake tests must be able to leave out). A connected socket is
 * the caller's to close.
 */
export function tryConnect(url: string, auth: Record<string, unknown>, timeoutMs = 5000): Promise<HandshakeOutcome> {
  const socket = io(url, { auth, transports: ["websocket"], reconnection: false, autoConnect: false, forceNew: true });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error("handshake neither connected nor refused in time"));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve({ connected: true, socket });
    });
    socket.once("connect_error", (error: Error & { data?: unknown }) => {
      clearTimeout(timer);
      socket.disconnect();
      resolve({ connected: false, error });
    });
    socket.connect();
  });
}

/** base64url of a JSON value, for hand-built tokens. */
export const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
