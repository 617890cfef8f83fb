/**
 * Runs background work (the expiry sweep) on one node at a time across the cluster.
 */
export interface LeaderLock {
  /** Runs `work` if this node holds (or can take) the lock; returns false when another node does. */
  runExclusive(name: string, work: () => Promise<void>): Promise<boolean>;
  /** Gives up what this node holds (at shutdown). */
  release(): Promise<void>;
}

/** One node: it is always the leader. */
export class LocalLeaderLock implements LeaderLock {
  private readonly running = new Set<string>();

  async runExclusive(name: string, work: () => Promise<void>): Promise<boolean> {
    if (this.running.has(name)) return false;
    this.running.add(name);
    try {
      await work();
      return true;
    } finally {
      this.running.delete(name);
    }
  }

  async release(): Promise<void> {}
}
