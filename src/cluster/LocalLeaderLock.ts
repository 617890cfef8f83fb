import type { LeaderLock } from "../messaging/ports";

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
