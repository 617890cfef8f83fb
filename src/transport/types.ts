import type { Server, Socket } from "socket.io";
import type { ClientToServerEvents, Message, ServerToClientEvents, StatusUpdate } from "../protocol";
import type { OwnCopy } from "../messaging/ports";

/** Set by the auth middleware. `deviceId` is the client's own name for the device (logs only). */
export type SocketData = {
  userId: string;
  deviceId: string | null;
  /** The current token's `exp` in epoch ms; null without one (and in dev mode). */
  tokenExpiresAt?: number | null;
  /** While syncing: a live offer skipped this socket since its last backlog read (syncBacklog.ts). */
  missedLive?: boolean;
};
/** A status for one user's devices, but `except` (a connection). */
export type StatusDelivery = { userId: string; update: StatusUpdate; except?: string };
/**
 * Between nodes, through the adapter (transport/clusterFanout.ts): every stored message for
 * each node to offer to its own devices of its recipients and of its sender (`own`), and a
 * batch of statuses for each node to hand to its own.
 */
export type InterServerEvents = {
  "fanout:offer": (offer: { recipients: string[]; message: Message; own?: OwnCopy }) => void;
  "fanout:status": (batch: StatusDelivery[]) => void;
};
export type TicksServer = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;
export type TicksSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

/** Who a log line is about: the user and, when the client named it, the device. */
export const logContext = (socket: TicksSocket): { userId: string; deviceId?: string } =>
  socket.data.deviceId ? { userId: socket.data.userId, deviceId: socket.data.deviceId } : { userId: socket.data.userId };
