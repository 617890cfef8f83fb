/**
 * What the transport needs from the cluster (cluster/ implements it, in memory or in Redis).
 */

/**
 * Per-user event budget: RATE_LIMIT_EVENTS_PER_SEC events a second plus a RATE_LIMIT_BURST
 * allowance, counted cluster-wide with Redis.
 */
export interface RateLimiter {
  /**
   * Takes `cost` events (default 1) from the user's budget; false when it is spent (answer
   * RATE_LIMITED). A cost above the per-second budget counts as that budget.
   */
  allow(userId: string, cost?: number): Promise<boolean>;
}
