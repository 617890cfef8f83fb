import type { LeaderLock } from "../messaging/ports";
import type { RedisClient } from "./redis";

/**
 * A lease in Redis: `{prefix}:leader:{name}` holds the id of the node that may run that job,
 * with a TTL of `leaseMs`. The holder renews it each run (and while a run lasts), so it
 * stays leader; if it dies, the lease lapses and the next node to try takes over.
 */
const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export class RedisLeaderLock implements LeaderLock {
  private readonly held = new Set<string>();
  private readonly running = new Set<string>();

  constructor(
    private readonly redis: RedisClient,
    private readonly nodeId: string,
    private readonly leaseMs: number,
    private readonly prefix: string,
  ) {}

  private key(name: string): string {
    return `${this.prefix}:leader:${name}`;
  }

  private async acquire(name: string): Promise<boolean> {
    const ok = (await this.redis.eval(ACQUIRE, 1, this.key(name), this.nodeId, this.leaseMs)) === 1;
    if (ok) this.held.add(name);
    else this.held.delete(name);
    return ok;
  }

  async runExclusive(name: string, work: () => Promise<void>): Promise<boolean> {
    // The lease says which node; this says one run at a time on it (as LocalLeaderLock does).
    if (this.running.has(name)) return false;
    this.running.add(name);
    try {
      if (!(await this.acquire(name))) return false;
      const renew = setInterval(() => void this.acquire(name).catch(() => {}), Math.max(50, this.leaseMs / 3));
      renew.unref();
      try {
        await work();
        return true;
      } finally {
        clearInterval(renew);
      }
    } finally {
      this.running.delete(name);
    }
  }

  /** Hands the leases back at shutdown, so another node takes over without waiting. */
  async release(): Promise<void> {
    await Promise.allSettled([...this.held].map((name) => this.redis.eval(RELEASE, 1, this.key(name), this.nodeId)));
    this.held.clear();
  }
}
