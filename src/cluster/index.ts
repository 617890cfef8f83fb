import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import type { Config } from "../config";
import type { Logger } from "../log";
import type { LeaderLock, PresenceTracker } from "../messaging/ports";
import type { ReadinessCheck } from "../readiness";
import type { RateLimiter } from "../transport/ports";
import { LocalLeaderLock } from "./LocalLeaderLock";
import { MemoryPresenceTracker } from "./MemoryPresenceTracker";
import { memoryRateLimiter, redisRateLimiter } from "./RateLimiter";
import { connectRedis, NODE_ID } from "./redis";
import { RedisLeaderLock } from "./RedisLeaderLock";
import { RedisNodeDeaths } from "./RedisNodeDeaths";
import { RedisPresenceTracker } from "./RedisPresenceTracker";
import type { NodeDeath } from "../messaging/Redeliverer";

import type { Adapter } from "socket.io-adapter";
import type { Namespace } from "socket.io";

type AdapterFactory = (nsp: Namespace) => Adapter;

/**
 * Everything that differs between one node and many: how rooms reach other nodes, who is
 * online, who runs background jobs, and which transports clients may use.
 */
export type Cluster = {
  adapter?: AdapterFactory;
  presence: PresenceTracker;
  leaderLock: LeaderLock;
  rateLimiter: RateLimiter;
  readiness: ReadinessCheck[];
  /** Announces other nodes' deaths (one node has no others). */
  nodeDeaths?: { subscribe(listener: (death: NodeDeath) => void): void };
  /** Without sticky sessions, long-polling breaks across nodes: clusters are WebSocket-only. */
  transports: ("polling" | "websocket")[];
  close(): Promise<void>;
};

const rateLimit = (config: Pick<Config, "rateLimitPerSec" | "rateLimitBurst">) => ({
  eventsPerSec: config.rateLimitPerSec,
  burst: config.rateLimitBurst,
});

/** One process: in-memory rooms, presence and leadership. */
export function localCluster(config: Pick<Config, "rateLimitPerSec" | "rateLimitBurst">): Cluster {
  return {
    presence: new MemoryPresenceTracker(),
    leaderLock: new LocalLeaderLock(),
    rateLimiter: memoryRateLimiter(rateLimit(config)),
    readiness: [],
    transports: ["polling", "websocket"],
    close: async () => {},
  };
}

/**
 * Many processes sharing Redis: one server (REDIS_URL) or a Redis Cluster
 * (REDIS_CLUSTER_NODES, always the classic adapter: config.ts says why).
 */
async function redisCluster(config: Config, log: Logger): Promise<Cluster> {
  const redis = config.redis!;
  const clients = await connectRedis(redis.target, log);
  const leaderLock = new RedisLeaderLock(clients.data, NODE_ID, config.leaderLeaseMs, redis.prefix);
  const presence = new RedisPresenceTracker(clients.data, NODE_ID, config.presenceTtlMs, redis.prefix);
  let nodeDeaths: RedisNodeDeaths;
  try {
    nodeDeaths = await RedisNodeDeaths.open(await clients.subscriber(), redis.prefix, NODE_ID, log);
  } catch (err) {
    await clients.close();
    throw err;
  }
  const factory: AdapterFactory =
    redis.adapter === "sharded"
      ? createShardedAdapter(clients.pub, clients.sub, { subscriptionMode: "dynamic", channelPrefix: `${redis.prefix}:sio` })
      : createAdapter(clients.pub, clients.sub, { key: `${redis.prefix}:sio` });
  return {
    // socket.io calls it with `new`: a function, not an arrow.
    adapter: function (nsp: Namespace) {
      return survivesRedisOutage(factory(nsp), log);
    },
    presence,
    leaderLock,
    nodeDeaths,
    rateLimiter: redisRateLimiter(clients.data, rateLimit(config), redis.prefix),
    readiness: [{ name: "redis", check: async () => void (await clients.data.ping()) }],
    transports: ["websocket"],
    close: async () => {
      await leaderLock.release();
      await presence.close();
      await nodeDeaths.close();
      await clients.close();
    },
  };
}

/**
 * Broadcasts with acknowledgements first ask Redis how many nodes there are, and socket.io
 * does not catch that promise: with Redis down it would crash the process. Counting only
 * this node instead makes such a broadcast reach the local sockets, as every other packet
 * does during an outage.
 */
function survivesRedisOutage(adapter: Adapter, log: Logger): Adapter {
  const serverCount = adapter.serverCount.bind(adapter);
  adapter.serverCount = () =>
    serverCount().catch((err: Error) => {
      log.debug({ err: err.message }, "redis unavailable: broadcasting to this node only");
      return 1;
    });
  return adapter;
}

export function createCluster(config: Config, log: Logger): Promise<Cluster> {
  return config.redis ? redisCluster(config, log) : Promise.resolve(localCluster(config));
}
