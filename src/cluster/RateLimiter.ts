import {
  BurstyRateLimiter,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  type IRateLimiterRedisOptions,
  type RateLimiterAbstract,
} from "rate-limiter-flexible";
import type { RateLimiter } from "../transport/ports";
import type { RedisClient } from "./redis";

/**
 * The per-user event budget: RATE_LIMIT_EVENTS_PER_SEC events a second, plus
 * RATE_LIMIT_BURST extra events every BURST_WINDOW_SEC for the moments a real client needs
 * more (a pasted burst, a reconnect's gap-fill), counted cluster-wide with Redis.
 * docs/rate-limits.md has the measurements behind the defaults.
 */
export type RateLimit = { eventsPerSec: number; burst: number };

/** The burst allowance refills this often (a fixed window from the user's first extra event). */
export const BURST_WINDOW_SEC = 10;

const unlimited: RateLimiter = { allow: async () => true };

type Consumer = { consume(key: string, points?: number): Promise<unknown> };

class FlexibleLimiter implements RateLimiter {
  /** @param maxCost the per-second budget: a request costing more could never pass, so it costs that much. */
  constructor(
    private readonly limiter: Consumer,
    private readonly maxCost: number,
  ) {}

  async allow(userId: string, cost = 1): Promise<boolean> {
    if (cost <= 0) return true;
    try {
      await this.limiter.consume(userId, Math.min(cost, this.maxCost));
      return true;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return false;
      throw rejection; // a store failure the insurance limiter did not absorb
    }
  }
}

/**
 * The per-second window first; only an event it refuses spends from the burst allowance,
 * so a client under the steady rate costs one counter update per event, as before.
 */
function limiterOf(
  limit: RateLimit,
  make: (points: number, duration: number, suffix: string) => RateLimiterAbstract,
): RateLimiter {
  if (limit.eventsPerSec <= 0) return unlimited;
  const steady = make(limit.eventsPerSec, 1, "");
  if (limit.burst <= 0) return new FlexibleLimiter(steady, limit.eventsPerSec);
  const burst = make(limit.burst, BURST_WINDOW_SEC, ":burst");
  return new FlexibleLimiter(new BurstyRateLimiter(steady, burst), limit.eventsPerSec);
}

/** One node: counted in memory. */
export function memoryRateLimiter(limit: RateLimit): RateLimiter {
  return limiterOf(limit, (points, duration) => new RateLimiterMemory({ points, duration }));
}

/**
 * Many nodes: counted in Redis (`{prefix}:rl:{userId}`, `{prefix}:rl:burst:{userId}`), so
 * the limit holds whichever node a user's sockets are on. While Redis is down each node
 * counts in memory instead, so an outage neither blocks users nor lifts the limit.
 */
export function redisRateLimiter(redis: RedisClient, limit: RateLimit, prefix: string): RateLimiter {
  return limiterOf(limit, (points, duration, suffix) => {
    const options: IRateLimiterRedisOptions = {
      storeClient: redis,
      points,
      duration,
      keyPrefix: `${prefix}:rl${suffix}`,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ points, duration }),
    };
    return new RateLimiterRedis(options);
  });
}
