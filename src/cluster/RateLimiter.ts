import type Redis from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { RateLimiter } from "../transport/ports";

const unlimited: RateLimiter = { allow: async () => true };

class FlexibleLimiter implements RateLimiter {
  constructor(private readonly limiter: RateLimiterAbstract) {}

  async allow(userId: string): Promise<boolean> {
    try {
      await this.limiter.consume(userId);
      return true;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return false;
      throw rejection; // a store failure the insurance limiter did not absorb
    }
  }
}

/** One node: counted in memory. */
export function memoryRateLimiter(eventsPerSec: number): RateLimiter {
  return eventsPerSec > 0 ? new FlexibleLimiter(new RateLimiterMemory({ points: eventsPerSec, duration: 1 })) : unlimited;
}

/**
 * Many nodes: counted in Redis (`{prefix}:rl:{userId}`), so the limit holds whichever node
 * a user's sockets are on. While Redis is down each node counts in memory instead, so an
 * outage neither blocks users nor lifts the limit.
 */
export function redisRateLimiter(redis: Redis, eventsPerSec: number, prefix: string): RateLimiter {
  if (eventsPerSec <= 0) return unlimited;
  return new FlexibleLimiter(
    new RateLimiterRedis({
      storeClient: redis,
      points: eventsPerSec,
      duration: 1,
      keyPrefix: `${prefix}:rl`,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ points: eventsPerSec, duration: 1 }),
    }),
  );
}
