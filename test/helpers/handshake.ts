import { clientSocket, type ClientSocket, type ConnectError } from "./socket";

export type HandshakeOutcome =
  | { connected: true; socket: ClientSocket }
  | { connected: false; error: ConnectError };

/**
 * Tries one handshake with exactly the `auth` object given (the Device helper always adds a
 * userId or a token, which handshake tests must be able to leave out). A connected socket is
 * the caller's to close.
 */
export function tryConnect(url: string, auth: Record<string, unknown>, timeoutMs = 5000): Promise<HandshakeOutcome> {
  const socket = clientSocket(url, auth);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error("handshake neither connected nor refused in time"));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve({ connected: true, socket });
    });
    socket.once("connect_error", (error: ConnectError) => {
      clearTimeout(timer);
      socket.disconnect();
      resolve({ connected: false, error });
    });
    socket.connect();
  });
}

/** base64url of a JSON value, for hand-built tokens. */
export const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString("base64url");
