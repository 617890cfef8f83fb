import type { PresenceTracker } from "../messaging/ports";

/** One node: the connections are all here. */
export class MemoryPresenceTracker implements PresenceTracker {
  private readonly connections = new Map<string, Set<string>>();

  async connected(userId: string, connectionId: string): Promise<boolean> {
    let set = this.connections.get(userId);
    if (!set) this.connections.set(userId, (set = new Set()));
    set.add(connectionId);
    return set.size === 1;
  }

  async disconnected(userId: string, connectionId: string): Promise<boolean> {
    const set = this.connections.get(userId);
    if (!set?.delete(connectionId)) return false;
    if (set.size > 0) return false;
    this.connections.delete(userId);
    return true;
  }

  async online(userIds: string[]): Promise<Set<string>> {
    return new Set(userIds.filter((u) => this.connections.has(u)));
  }

  /** Nothing expires: this process is the only node, and it sees every disconnect. */
  async refresh(): Promise<string[]> {
    return [];
  }

  async reap(): Promise<string[]> {
    return [];
  }

  async close(): Promise<void> {
    this.connections.clear();
  }
}
