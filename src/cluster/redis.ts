import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import Redis from "ioredis";
import type { Logger } from "../log";

/** A name for this process, unique across the cluster; what locks and presence entries carry. */
export const NODE_ID = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;

type RedisClients = {
  /** Publishes adapter packets. Failures are logged and dropped (see below). */
  pub: Redis;
  /** Subscribed connection of the adapter (ioredis resubscribes after a reconnect). */
  sub: Redis;
  /** Presence, leader lease: commands fail fast while Redis is down instead of queueing. */
  data: Redis;
  close(): Promise<void>;
};

/**
 * Opens the three connections a node needs. While Redis is down the adapter's publishes
 * fail (offline queue off): the socket.io adapter does not catch those promises, so they are
 * caught here and logged. Nothing is lost by dropping them: PostgreSQL holds every message,
 * and what missed live delivery comes by backlog or redelivery.
 */
export async function connectRedis(url: string, log: Logger): Promise<RedisClients> {
  const common = { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000 };
  const pub = new Redis(url, { ...common, enableOfflineQueue: false });
  const sub = new Redis(url, { ...common });
  const data = new Redis(url, { ...common, enableOfflineQueue: false });
  let lastWarn = 0;
  for (const [name, client] of Object.entries({ pub, sub, data })) {
    client.on("error", (err) => {
      // One line per few seconds: a Redis outage must not flood the log.
      if (Date.now() - lastWarn > 5000) {
        lastWarn = Date.now();
        log.warn({ err: err.message, client: name }, "redis connection error");
      }
    });
  }
  for (const method of ["publish", "spublish"] as const) {
    const original = pub[method].bind(pub) as (...args: unknown[]) => Promise<number>;
    (pub as unknown as Record<string, unknown>)[method] = (...args: unknown[]) =>
      original(...args).catch((err: Error) => {
        log.debug({ err: err.message }, "adapter publish dropped while redis is unavailable");
        return 0;
      });
  }
  await Promise.all([pub.connect(), sub.connect(), data.connect()]);
  return {
    pub,
    sub,
    data,
    close: async () => {
      await Promise.allSettled([pub.quit(), sub.quit(), data.quit()]);
      pub.disconnect();
      sub.disconnect();
      data.disconnect();
    },
  };
}
