/**
 * The one place tests open a socket.io-client socket: WebSocket only (what clusters allow),
 * a fresh connection each time, not connected until the caller says so, and no automatic
 * reconnection unless asked for (reconnectingClient does). Device, the handshake probe,
 * the failover and reconnecting clients and the benchmark's load generator are built on it.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import type { ClientEventName, ClientToServerEvents, ServerToClientEvents } from "../../src/protocol/events";

export type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;
export type ReplyOf<E extends ClientEventName> = Parameters<Parameters<ClientToServerEvents[E]>[1]>[0];
export type RequestOf<E extends ClientEventName> = Parameters<ClientToServerEvents[E]>[0];
export type ConnectError = Error & { data?: unknown };

/** A new, unconnected socket to `url` with exactly this `auth`; `options` override the defaults above. */
export function clientSocket(
  url: string,
  auth: Record<string, unknown>,
  options: Partial<ManagerOptions & SocketOptions> = {},
): ClientSocket {
  return io(url, { auth, transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, ...options });
}

/**
 * Connects and resolves at the event `until` ("connect", or "sync:complete" once the backlog
 * is through); rejects with the server's connect_error, or after `timeoutMs`. On failure the
 * socket is closed.
 */
export function connectSocket(
  socket: ClientSocket,
  options: { until?: "connect" | "sync:complete"; timeoutMs?: number } = {},
): Promise<ClientSocket> {
  const { until = "connect", timeoutMs = 10_000 } = options;
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.disconnect();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`socket ${describeAuth(socket)} did not reach ${until} within ${timeoutMs} ms`)), timeoutMs);
    (socket.once as (event: string, fn: () => void) => void)(until, () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("connect_error", fail);
    socket.connect();
  });
}

function describeAuth(socket: ClientSocket): string {
  const auth = socket.auth as Record<string, unknown> | undefined;
  return String(auth?.userId ?? (auth?.token ? "(token)" : ""));
}
