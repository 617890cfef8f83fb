import type { Metrics } from "../metrics";
import { clientEventListener, type HandlerDeps } from "./handlers";
import { OutgoingBufferCap } from "./outgoingBuffer";
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
 * authenticated socket is one line of `openSession`. A new concern (a timer, a cap) is one
 * more function and one line; what it does at disconnect goes in `SharedListeners.closed`.
 *
 * The listeners are made once for the server and shared by every socket (Socket.IO calls
 * them with the socket as `this`): a socket holds only the state that is its own, not a
 * closure per event (docs/benchmarks.md, "Connects").
 */
export function acceptConnections(io: TicksServer, deps: ConnectionDeps): void {
  const handlerDeps: HandlerDeps = {
    ...deps,
    observe: (event, outcome, seconds) => deps.metrics.handlerSeconds.observe({ event, outcome }, seconds),
  };
  const shared = sharedListeners(deps, handlerDeps);
  io.on("connection", (socket) => openSession(socket, deps, shared));
}

type SharedListeners = {
  /** Every client event (handlers.ts). */
  event: (this: TicksSocket, event: string, ...args: unknown[]) => void;
  /** The socket's `disconnect`: the connection count, the log line, presence. */
  closed: (this: TicksSocket, reason: string) => void;
  /** MAX_SOCKET_BUFFER_BYTES (outgoingBuffer.ts). */
  outgoing: OutgoingBufferCap;
};

function sharedListeners(deps: ConnectionDeps, handlerDeps: HandlerDeps): SharedListeners {
  const { metrics, log, presence, track } = deps;
  return {
    event: clientEventListener(handlerDeps),
    outgoing: new OutgoingBufferCap(deps.maxSocketBufferBytes, log, () => metrics.slowConsumerDisconnects.inc()),
    closed(this: TicksSocket, reason: string) {
      metrics.connectedSockets.dec();
      log.debug({ ...logContext(this), socketId: this.id, reason }, "device disconnected");
      // Presence stays ordered: the connect went to the tracker before this (trackPresence).
      const failed = (err: unknown) => log.warn({ err, ...logContext(this) }, "presence update failed");
      track(presence.disconnected(this.data.userId, this.id).catch(failed));
    },
  };
}

function openSession(socket: TicksSocket, deps: ConnectionDeps, shared: SharedListeners): void {
  countConnection(socket, deps);
  // Syncing until the backlog is drained: live messages skip this socket meanwhile.
  socket.join([userRoom(socket.data.userId), SYNCING_ROOM]);
  shared.outgoing.watch(socket);
  socket.onAny(shared.event);
  // The directory entry and presence need not hold up the backlog: they run alongside.
  recordInDirectory(socket, deps);
  trackPresence(socket, deps);
  socket.on("disconnect", shared.closed);
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

/** Undone by SharedListeners.closed. */
function countConnection(socket: TicksSocket, { metrics, log }: ConnectionDeps): void {
  metrics.connectedSockets.inc();
  log.debug({ ...logContext(socket), socketId: socket.id }, "device connected");
}

function recordInDirectory(socket: TicksSocket, { messaging, track, log }: ConnectionDeps): void {
  track(messaging.connect(socket.data.userId).catch((err) => log.warn({ err, ...logContext(socket) }, "user not recorded")));
}

/** Presence stays ordered: the connect is sent to the tracker before any disconnect can be (SharedListeners.closed). */
function trackPresence(socket: TicksSocket, { presence, track, log }: ConnectionDeps): void {
  const failed = (err: unknown) => log.warn({ err, ...logContext(socket) }, "presence update failed");
  track(presence.connected(socket.data.userId, socket.id).catch(failed));
}

function startBacklogSync(socket: TicksSocket, { messaging, sync, metrics, log }: ConnectionDeps): void {
  syncBacklog(socket, messaging, sync, log, () => metrics.backlogPages.inc()).catch((err) =>
    log.error({ err, ...logContext(socket) }, "backlog sync failed"),
  );
}
