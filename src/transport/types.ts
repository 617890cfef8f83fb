import type { Server, Socket } from "socket.io";
import type { ClientToServerEvents, ServerToClientEvents } from "../protocol";

export type SocketData = {
  userId: string;
  deviceId: string | null;
  /** The current token's `exp` in epoch ms; null without one (and in dev mode). */
  tokenExpiresAt?: number | null;
};
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export type InterServerEvents = {};
export type TicksServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type TicksSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
