import { createServer, type Server as HttpServer } from "node:http";
import { Server } from "socket.io";
import type { AddressInfo } from "node:net";
import { systemClock, type Clock } from "./clock";
import type { Config } from "./config";
import { localCluster, type Cluster } from "./cluster";
import { httpHandler, type ReadinessCheck } from "./http/routes";
import type { Logger } from "./log";
import { ExpirySweeper } from "./messaging/ExpirySweeper";
import { Redeliverer } from "./messaging/Redeliverer";
import { MessagingService } from "./messaging/MessagingService";
import type { MessageStore } from "./messaging/ports";
import { PresenceService } from "./messaging/PresenceService";
import type { PushStore } from "./messaging/pushPorts";
import type { PushWorker } from "./messaging/PushWorker";
import { createPush } from "./push/createPush";
import { Metrics } from "./metrics";
import { authMiddleware } from "./transport/auth";
import { registerHandlers } from "./transport/handlers";
import { SYNCING_ROOM, userRoom } from "./transport/rooms";
import { SocketNotifier } from "./transport/SocketNotifier";
import { syncBacklog } from "./transport/syncBacklog";
import type { TicksServer } from "./transport/types";

export type AppDeps = {
  config: Config;
  store: MessageStore;
  /** Pushkeys and the push outbox. */
  pushStore: PushStore;
  log: Logger;
  /** @default the system clock */
  clock?: Clock;
  /** Rooms, presence and leadership across nodes. @default one node, in memory */
  cluster?: Cluster;
  /** @default a fresh registry */
  metrics?: Metrics;
};

export type TicksApp = {
  http: HttpServer;
  io: TicksServer;
  messaging: MessagingService;
  sweeper: ExpirySweeper;
  redeliverer: Redeliverer;
  /** Null when pushes are off (PUSH_GATEWAY_URL unset). */
  pushWorker: PushWorker | null;
  metrics: Metrics;
  listen(port: number, host?: string): Promise<number>;
  /** Idempotent: stop accepting, finish in-flight events, disconnect sockets, stop sweeping. */
  close(): Promise<void>;
};

/** Longest wait for in-flight events at shutdown. */
const DRAIN_TIMEOUT_MS = 10_000;

/** Room for the JSON envelope around the largest content (4 bytes a code point at most). */
export const maxHttpBufferSize = (maxContentLength: number): number => Math.max(64 * 1024, maxContentLength * 4 + 16 * 1024);

/** Wires the core, the transport and HTTP together. No I/O until listen(). */
export function createApp(deps: AppDeps): TicksApp {
  const { config, store, log } = deps;
  const clock = deps.clock ?? systemClock;
  const cluster = deps.cluster ?? localCluster(config);
  const metrics = deps.metrics ?? new Metrics();
  const checks: ReadinessCheck[] = [{ name: "database", check: () => store.ping() }, ...cluster.readiness];
  const http = createServer(httpHandler(checks, metrics, log));
  const io: TicksServer = new Server(http, {
    transports: cluster.transports,
    maxHttpBufferSize: maxHttpBufferSize(config.maxContentLength),
    serveClient: false,
    ...(cluster.adapter ? { adapter: cluster.adapter } : {}),
  });

  const notifier = new SocketNotifier(io, config.deliveryAckTimeoutMs);
  const messaging = new MessagingService(
    store,
    notifier,
    clock,
    { messageTtlMs: config.messageTtlMs, maxContentLength: config.maxContentLength },
    log,
    {
      stored: (n) => metrics.messagesStored.inc(n),
      delivered: (n) => metrics.messagesDelivered.inc(n),
      read: (n) => metrics.messagesRead.inc(n),
    },
  );
  const presence = new PresenceService(cluster.presence, store, notifier, clock, log);
  const sweeper = new ExpirySweeper(
    messaging,
    cluster.leaderLock,
    config.expirySweepIntervalMs,
    log,
    (n) => metrics.expired.inc(n),
  );

  // Users with a synced socket on this node: their devices are this node's to redeliver to.
  const localUsers = () => {
    const users = new Set<string>();
    for (const socket of io.of("/").sockets.values()) {
      if (!socket.rooms.has(SYNCING_ROOM)) users.add(socket.data.userId);
    }
    return [...users];
  };
  const redeliverer = new Redeliverer(messaging, localUsers, config.redeliveryAfterMs, log);
  const push = createPush(config, deps.pushStore, clock, log, metrics);

  const inflight = new Set<Promise<unknown>>();
  let closing = false;
  const track = (work: Promise<unknown>): void => {
    inflight.add(work);
    void work.finally(() => inflight.delete(work));
  };

  io.use(authMiddleware(config.auth, log));
  io.on("connection", (socket) => {
    const { userId } = socket.data;
    metrics.connectedSockets.inc();
    // Syncing until the backlog is drained: live messages skip this socket meanwhile.
    socket.join([userRoom(userId), SYNCING_ROOM]);
    registerHandlers(socket, {
      messaging,
      presence,
      push: push.service,
      rateLimiter: cluster.rateLimiter,
      log,
      track,
      closing: () => closing,
      observe: (event, outcome, seconds) => metrics.handlerSeconds.observe({ event, outcome }, seconds),
    });
    socket.on("disconnect", () => {
      metrics.connectedSockets.dec();
      track(presence.disconnected(userId, socket.id).catch((err) => log.warn({ err, userId }, "presence update failed")));
    });
    // The directory entry and presence need not hold up the backlog: they run alongside.
    // (Presence stays ordered: the tracker sends this connect before any disconnect.)
    track(messaging.connect(userId).catch((err) => log.warn({ err, userId }, "user not recorded")));
    track(presence.connected(userId, socket.id).catch((err) => log.warn({ err, userId }, "presence update failed")));
    syncBacklog(
      socket,
      messaging,
      { pageSize: config.backlogPageSize, ackTimeoutMs: config.deliveryAckTimeoutMs },
      log,
      () => metrics.backlogPages.inc(),
    ).catch((err) => log.error({ err, userId }, "backlog sync failed"));
  });

  const settled = (work: Promise<unknown>) =>
    Promise.race([work, new Promise((r) => setTimeout(r, DRAIN_TIMEOUT_MS).unref())]);
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      closing = true;
      http.close(); // no new connections; open sockets stay until their events are answered
      await settled(Promise.allSettled([...inflight]));
      await sweeper.stop();
      await redeliverer.stop();
      await push.worker?.stop();
      presence.stop();
      // Receipts of messages just sent come back through this node (and Redis): wait for them
      // (at most DELIVERY_ACK_TIMEOUT_MS), or they would stay `sent` until redelivery.
      await settled(messaging.settleOffers());
      // Closes every socket at the transport level: clients reconnect by themselves (elsewhere).
      await io.close();
      // What the disconnects started (presence, last seen) before Redis and the database go.
      await settled(Promise.allSettled([...inflight]));
    })());

  return {
    http,
    io,
    messaging,
    sweeper,
    redeliverer,
    pushWorker: push.worker,
    metrics,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        http.once("error", reject);
        http.listen(port, host, () => {
          http.off("error", reject);
          sweeper.start();
          redeliverer.start();
          push.worker?.start();
          presence.start(Math.max(50, Math.round(config.presenceTtlMs / 6)));
          resolve((http.address() as AddressInfo).port);
        });
      }),
    close,
  };
}
