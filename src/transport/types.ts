import type { Server, Socket } from "socket.io";
import type { ClientToServerEvents, ServerToClientEvents } from "../protocol";

/** Set by the auth middleware. `deviceId` is the client's own name for the device (logs only). */
export type SocketData = {
  userId: string;
  deviceId: string | null;
  /** The current token's `exp` in epoch ms; null without one (and in dev mode). */
  tokenExpiresAt?: number | null;
};
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
type InterServerEvents = {};
export type TicksServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type TicksSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

/** Who a log line is about: the user and, when the client named it, the device. */
export const logContext = (socket: TicksSocket): { userId: string; deviceId?: string } =>
  socket.data.deviceId ? { userId: socket.data.userId, deviceId: socket.data.deviceId } : { userId: socket.data.userId };
