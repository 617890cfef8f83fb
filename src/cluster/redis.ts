import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import Redis, { Cluster } from "ioredis";
import type { Logger } from "../log";
import type { RedisTarget } from "../configParts";

/** A name for this process, unique across the cluster; what locks and presence entries carry. */
export const NODE_ID = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;

/** One Redis server or a Redis Cluster: every class here takes either. */
export type RedisClient = Redis | Cluster;

type RedisClients = {
  /** Publishes adapter packets. Failures are logged and dropped (see below). */
  pub: RedisClient;
  /** Subscribed connection of the adapter (ioredis resubscribes after a reconnect or a failover). */
  sub: RedisClient;
  /** Presence, leader lease: commands fail fast while Redis is down instead of queueing. */
  data: RedisClient;
  /** A further connected client for another subscription (node deaths); the caller closes it. */
  subscriber(): Promise<RedisClient>;
  close(): Promise<void>;
};

const NODE_OPTIONS = { maxRetriesPerRequest: 1, connectTimeout: 5000 };

/**
 * Commands of the clients that do not subscribe give up after this long. A network cut
 * (packets dropped, no reset) leaves a connection that looks alive: without a timeout a
 * rate-limit check would wait for TCP to give up (minutes), and every event of the node
 * with it. Measured on the multi-host bed (docs/scaling.md).
 */
const COMMAND_TIMEOUT_MS = 1000;

/**
 * A client that is not connected yet (`lazyConnect`), to the one Redis or to the cluster.
 * A subscriber queues its (re)subscriptions while disconnected; a command client fails fast.
 */
function newClient(target: RedisTarget, role: "subscriber" | "commands"): RedisClient {
  const offlineQueue = role === "subscriber";
  const node = offlineQueue ? NODE_OPTIONS : { ...NODE_OPTIONS, commandTimeout: COMMAND_TIMEOUT_MS };
  if (target.kind === "single") {
    return new Redis(target.url, { ...node, lazyConnect: true, enableOfflineQueue: offlineQueue });
  }
  return new Cluster(target.nodes, {
    lazyConnect: true,
    enableOfflineQueue: offlineQueue,
    // A failover (replica promoted after cluster-node-timeout) answers CLUSTERDOWN or
    // connection errors for a moment: ioredis retries the command on the new slot map.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    slotsRefreshTimeout: 2000,
    redisOptions: node,
  });
}

/**
 * Connects, or says why not in words an operator can act on. A cluster client that cannot
 * reach a seed keeps retrying in the background: it is disconnected here, so a bad
 * REDIS_CLUSTER_NODES stops the process instead of leaving it half started.
 */
async function connect(client: RedisClient, target: RedisTarget): Promise<void> {
  try {
    await client.connect();
    if (target.kind === "cluster") {
      const info = String(await (client as Cluster).cluster("INFO"));
      if (!/cluster_state:ok/.test(info)) throw new Error(`cluster_state is not ok:\n${info.trim()}`);
    }
  } catch (err) {
    client.disconnect();
    if (target.kind === "single") throw err;
    const seeds = target.nodes.map((n) => `${n.host}:${n.port}`).join(",");
    throw new Error(
      `REDIS_CLUSTER_NODES=${seeds}: no working Redis Cluster there (${(err as Error).message}). ` +
        "Check that the seeds are cluster nodes (cluster-enabled yes) and reachable from this host.",
    );
  }
}

/**
 * Opens the three connections a node needs. While Redis is down the adapter's publishes
 * fail (offline queue off): the socket.io adapter does not catch those promises, so they are
 * caught here and logged. Nothing is lost by dropping them: PostgreSQL holds every message,
 * and what missed live delivery comes by backlog or redelivery.
 */
export async function connectRedis(target: RedisTarget, log: Logger): Promise<RedisClients> {
  const pub = newClient(target, "commands");
  const sub = newClient(target, "subscriber");
  const data = newClient(target, "commands");
  let lastWarn = 0;
  const warnings = (name: string, client: RedisClient) =>
    client.on("error", (err: Error) => {
      // One line per few seconds: a Redis outage must not flood the log.
      if (Date.now() - lastWarn > 5000) {
        lastWarn = Date.now();
        log.warn({ err: err.message, client: name }, "redis connection error");
      }
    });
  for (const [name, client] of Object.entries({ pub, sub, data })) warnings(name, client);
  for (const method of ["publish", "spublish"] as const) {
    const original = pub[method].bind(pub) as (...args: unknown[]) => Promise<number>;
    (pub as unknown as Record<string, unknown>)[method] = (...args: unknown[]) =>
      original(...args).catch((err: Error) => {
        log.debug({ err: err.message }, "adapter publish dropped while redis is unavailable");
        return 0;
      });
  }
  const opened: RedisClient[] = [pub, sub, data];
  const results = await Promise.allSettled(opened.map((c) => connect(c, target)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    for (const c of opened) c.disconnect();
    throw failed.reason;
  }
  return {
    pub,
    sub,
    data,
    subscriber: async () => {
      const client = newClient(target, "subscriber");
      warnings("subscriber", client);
      await connect(client, target);
      return client;
    },
    close: async () => {
      await Promise.allSettled([pub.quit(), sub.quit(), data.quit()]);
      pub.disconnect();
      sub.disconnect();
      data.disconnect();
    },
  };
}
