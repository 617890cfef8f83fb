import { createServer, type Server as HttpServer } from "node:http";
import { Server } from "socket.io";
import type { AddressInfo } from "node:net";
import { systemClock, type Clock } from "./clock";
import type { Config } from "./config";
import { localCluster, type Cluster } from "./cluster";
import { httpHandler } from "./http/routes";
import { mediaRoutes } from "./http/mediaRoutes";
import { DiskMediaStore } from "./media/DiskMediaStore";
import { mediaOrigin } from "./media/disposition";
import { MediaService } from "./media/MediaService";
import type { MediaCatalog, MediaStore } from "./media/ports";
import type { UrlSigner } from "./media/UrlSigner";
import { staticAssets } from "./http/static";
import { throttledWarn, type Logger } from "./log";
import { ExpirySweeper } from "./messaging/ExpirySweeper";
import { Redeliverer } from "./messaging/Redeliverer";
import { MessagingService } from "./messaging/MessagingService";
import { GroupService } from "./messaging/GroupService";
import type { GroupStore } from "./messaging/groupPorts";
import type { MessageStore } from "./messaging/ports";
import { PresenceService } from "./messaging/PresenceService";
import { StatusCursors } from "./messaging/StatusCursors";
import type { StatusStreamStore } from "./messaging/statusPorts";
import { StatusStream } from "./messaging/StatusStream";
import type { PushStore } from "./messaging/pushPorts";
import type { PushWorker } from "./messaging/PushWorker";
import { createPush } from "./push/createPush";
import { Metrics } from "./metrics";
import { maxPacketBytes } from "./protocol/packets";
import type { ReadinessCheck } from "./readiness";
import { authMiddleware } from "./transport/auth";
import { createTokenVerifier } from "./auth/TokenVerifier";
import { TokenLifetimes } from "./transport/TokenLifetimes";
import { acceptConnections, syncedLocalUsers } from "./transport/connection";
import { originOptions } from "./transport/origins";
import { SocketNotifier } from "./transport/SocketNotifier";
import { ORDER_DEFAULTS } from "./transport/orderedEmit";
import { listenForFanout } from "./transport/clusterFanout";
import type { TicksServer } from "./transport/types";

export type AppDeps = {
  config: Config;
  store: MessageStore;
  /** Group membership changes and who may see what. */
  groupStore: GroupStore;
  /** Pushkeys and the push outbox. */
  pushStore: PushStore;
  /** v3: each user's status stream (status:sync, message:info). */
  statusStore: StatusStreamStore;
  /** Seals status stream cursors: StatusStreamStore.cursorKey(), read once at startup (32 bytes). */
  cursorKey: Uint8Array;
  log: Logger;
  /** @default the system clock */
  clock?: Clock;
  /** Rooms, presence and leadership across nodes. @default one node, in memory */
  cluster?: Cluster;
  /** @default a fresh registry */
  metrics?: Metrics;
  /** Where media bytes live, what the database knows of them, and the key that signs Ticks' own media URLs. */
  media: { store: MediaStore; catalog: MediaCatalog; signer: UrlSigner };
};

export type TicksApp = {
  http: HttpServer;
  io: TicksServer;
  messaging: MessagingService;
  media: MediaService;
  sweeper: ExpirySweeper;
  /** Null when pushes are off (PUSH_GATEWAY_URL unset). */
  pushWorker: PushWorker | null;
  metrics: Metrics;
  /** Token expiry of this node's sockets. */
  tokens: TokenLifetimes;
  listen(port: number, host?: string): Promise<number>;
  /** Idempotent: stop accepting, finish in-flight events, disconnect sockets, stop sweeping. */
  close(): Promise<void>;
};

/** Longest wait for in-flight events at shutdown. */
const DRAIN_TIMEOUT_MS = 10_000;

/** Wires the core, the transport and HTTP together. No I/O until listen(). */
export function createApp(deps: AppDeps): TicksApp {
  const { config, store, log } = deps;
  const clock = deps.clock ?? systemClock;
  const cluster = deps.cluster ?? localCluster(config);
  const metrics = deps.metrics ?? new Metrics();
  const checks: ReadinessCheck[] = [{ name: "database", check: () => store.ping() }, ...cluster.readiness];
  const inflight = new Set<Promise<unknown>>();
  let closing = false;
  const track = (work: Promise<unknown>): void => {
    inflight.add(work);
    void work.finally(() => inflight.delete(work));
  };
  const media = new MediaService(deps.media.store, deps.media.catalog, clock, config.media, log);
  // The disk store's bytes come and go through this server; a bucket's go to the bucket.
  const mediaStore = deps.media.store;
  const routes =
    mediaStore instanceof DiskMediaStore ? [mediaRoutes({ store: mediaStore, catalog: deps.media.catalog, signer: deps.media.signer, clock, log, track })] : [];
  const assets = staticAssets({
    webApp: config.webApp,
    authMode: config.auth.mode,
    maxContentLength: config.maxContentLength,
    mediaOrigin: mediaOrigin(config.media.store),
  });
  const http = createServer(httpHandler(checks, metrics, log, assets, routes));
  const io: TicksServer = new Server(http, {
    transports: cluster.transports,
    maxHttpBufferSize: maxPacketBytes(config.maxContentLength),
    serveClient: false,
    ...originOptions(config.origins, log),
    ...(cluster.adapter ? { adapter: cluster.adapter } : {}),
  });

  const notifier = new SocketNotifier(io, config.deliveryAckTimeoutMs, !cluster.adapter, ORDER_DEFAULTS, (reason) =>
    metrics.liveOrderGaps.inc({ reason }),
  );
  const statuses = new StatusStream(deps.statusStore, new StatusCursors(deps.cursorKey), clock);
  const messaging = new MessagingService(
    store,
    notifier,
    clock,
    {
      messageTtlMs: config.messageTtlMs,
      maxContentLength: config.maxContentLength,
      editWindowMs: config.editWindowMs,
      deleteWindowMs: config.deleteWindowMs,
    },
    log,
    {
      stored: (n) => metrics.messagesStored.inc(n),
      delivered: (n) => metrics.messagesDelivered.inc(n),
      read: (n) => metrics.messagesRead.inc(n),
      redelivery: (reason, outcome, n) => n > 0 && metrics.redelivery.inc({ reason, outcome }, n),
    },
    statuses,
    media,
  );
  const groups = new GroupService(
    deps.groupStore,
    store,
    (from, message, recipients, origin) => messaging.publish(from, message, recipients, origin),
    notifier,
    clock,
    { messageTtlMs: config.messageTtlMs, maxMembers: config.groupMaxMembers, createdPerHour: config.groupCreatePerHour },
  );
  // Four heartbeats fit in a tracker's deadline (see RedisPresenceTracker).
  const heartbeatMs = Math.max(50, Math.round(config.presenceTtlMs / 6));
  const presence = new PresenceService(cluster.presence, store, notifier, clock, log, heartbeatMs);
  const sweeper = new ExpirySweeper(
    messaging,
    cluster.leaderLock,
    config.expirySweepIntervalMs,
    log,
    (n) => metrics.expired.inc(n),
    media,
  );

  const redeliverer = new Redeliverer(messaging, () => syncedLocalUsers(io), config.redeliveryAfterMs, log, clock);
  cluster.nodeDeaths?.subscribe((death) => void redeliverer.nodeDied(death));
  const push = createPush(config, deps.pushStore, clock, log, metrics);


  const jwksWarn = throttledWarn(log);
  const verifier =
    config.auth.mode === "jwt"
      ? createTokenVerifier(config.auth, { fetchFailed: (err) => jwksWarn({ err }, "JWKS fetch failed: new tokens are refused") })
      : null;
  const tokens = new TokenLifetimes(verifier, config.tokenRefreshWindowMs, log);
  metrics.countTokenDeadlines = () => tokens.tracked;
  io.use(authMiddleware(verifier, log));
  listenForFanout(io, (recipients, message, own) => messaging.offerHere(recipients, message, own));
  acceptConnections(io, {
    messaging,
    media,
    groups,
    statuses,
    presence,
    push: push.service,
    rateLimiter: cluster.rateLimiter,
    order: notifier,
    tokens,
    metrics,
    log,
    sync: { pageSize: config.backlogPageSize, ackTimeoutMs: config.deliveryAckTimeoutMs },
    maxSocketBufferBytes: config.maxSocketBufferBytes,
    track,
    closing: () => closing,
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
      await presence.stop();
      tokens.stop();
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
    media,
    sweeper,
    pushWorker: push.worker,
    metrics,
    tokens,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        http.once("error", reject);
        http.listen(port, host, () => {
          http.off("error", reject);
          sweeper.start();
          redeliverer.start();
          push.worker?.start();
          presence.start();
          resolve((http.address() as AddressInfo).port);
        });
      }),
    close,
  };
}
