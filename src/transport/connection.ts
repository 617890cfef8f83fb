import type { Metrics } from "../metrics";
import { registerHandlers, type HandlerDeps } from "./handlers";
import { limitOutgoingBuffer } from "./outgoingBuffer";
import { SYNCING_ROOM, userRoom } from "./rooms";
import { syncBacklog, type SyncOptions } from "./syncBacklog";
import { logContext, type TicksServer, type TicksSocket } from "./types";

/** What the handlers need (track: every piece of work shutdown waits for), plus metrics and backlog paging. */
export type ConnectionDeps = Omit<HandlerDeps, "observe"> & {
  metrics: Metrics;
  sync: SyncOptions;
  /** MAX_SOCKET_BUFFER_BYTES: 0 = no cap. */
  maxSocketBufferBytes: number;
};

/**
 * Owns a device's session, from connect to disconnect: everything that happens to one
 * authenticated socket is one line of `openSession`, each a function that also registers
 * its own disconnect work. A new concern (a timer, a cap) is one more function and one line.
 */
export function acceptConnections(io: TicksServer, deps: ConnectionDeps): void {
  const handlerDeps: HandlerDeps = {
    ...deps,
    observe: (event, outcome, seconds) => deps.metrics.handlerSeconds.observe({ event, outcome }, seconds),
  };
  io.on("connection", (socket) => openSession(socket, deps, handlerDeps));
}

function openSession(socket: TicksSocket, deps: ConnectionDeps, handlerDeps: HandlerDeps): void {
  countConnection(socket, deps);
  // Syncing until the backlog is drained: live messages skip this socket meanwhile.
  socket.join([userRoom(socket.data.userId), SYNCING_ROOM]);
  capOutgoingBuffer(socket, deps);
  registerHandlers(socket, handlerDeps);
  // The directory entry and presence need not hold up the backlog: they run alongside.
  recordInDirectory(socket, deps);
  trackPresence(socket, deps);
  startBacklogSync(socket, deps);
  deps.tokens.track(socket); // auth:expiring / auth:expired at the token's exp, if it has one
}

/**
 * Users with a synced socket on this node: their devices are this node's to redeliver to
 * (a socket still syncing gets its messages from the backlog instead).
 */
export function syncedLocalUsers(io: TicksServer): string[] {
  const users = new Set<string>();
  for (const socket of io.of("/").sockets.values()) {
    if (!socket.rooms.has(SYNCING_ROOM)) users.add(socket.data.userId);
  }
  return [...users];
}

function countConnection(socket: TicksSocket, { metrics, log }: ConnectionDeps): void {
  metrics.connectedSockets.inc();
  log.debug({ ...logContext(socket), socketId: socket.id }, "device connected");
  socket.on("disconnect", (reason) => {
    metrics.connectedSockets.dec();
    log.debug({ ...logContext(socket), socketId: socket.id, reason }, "device disconnected");
  });
}

function capOutgoingBuffer(socket: TicksSocket, { maxSocketBufferBytes, metrics, log }: ConnectionDeps): void {
  limitOutgoingBuffer(socket, maxSocketBufferBytes, log, () => metrics.slowConsumerDisconnects.inc());
}

function recordInDirectory(socket: TicksSocket, { messaging, track, log }: ConnectionDeps): void {
  track(messaging.connect(socket.data.userId).catch((err) => log.warn({ err, ...logContext(socket) }, "user not recorded")));
}

/** Presence stays ordered: the connect is sent to the tracker before any disconnect can be. */
function trackPresence(socket: TicksSocket, { presence, track, log }: ConnectionDeps): void {
  const { userId } = socket.data;
  const failed = (err: unknown) => log.warn({ err, ...logContext(socket) }, "presence update failed");
  track(presence.connected(userId, socket.id).catch(failed));
  socket.on("disconnect", () => track(presence.disconnected(userId, socket.id).catch(failed)));
}

function startBacklogSync(socket: TicksSocket, { messaging, sync, metrics, log }: ConnectionDeps): void {
  syncBacklog(socket, messaging, sync, log, () => metrics.backlogPages.inc()).catch((err) =>
    log.error({ err, ...logContext(socket) }, "backlog sync failed"),
  );
}
