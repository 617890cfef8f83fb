import Redis from "ioredis";
import { uniqueId } from "./ids";

/** The machine's shared Redis (CI starts one there too). */
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

export type RedisPrefix = { readonly redis: Redis; readonly prefix: string };

/**
 * A connection to the shared Redis and a key prefix no other suite uses; the suite's keys
 * are deleted at the end. Call it inside `describe`; it registers before/after there.
 */
export function useRedisPrefix(name: string): RedisPrefix {
  let redis: Redis | undefined;
  const prefix = uniqueId(`test-${name}`);
  before(async () => {
    redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
  });
  after(async () => {
    if (!redis) return;
    const keys = await redis.keys(`${prefix}*`); // its own keys and those of prefixes made from it
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });
  return {
    get redis() {
      if (!redis) throw new Error("useRedisPrefix: the connection is only there once the suite's before hook ran");
      return redis;
    },
    prefix,
  };
}
