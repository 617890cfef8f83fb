import type { Clock } from "../clock";
import type { Logger } from "../log";
import type { Presence } from "../protocol";
import { PeriodicJob } from "./PeriodicJob";
import type { MessageStore, PresenceTracker } from "./ports";

export interface PresenceNotifier {
  presence(update: Presence): void;
}

/**
 * Online/offline and last seen. Online state lives in the tracker (memory or Redis);
 * last seen is durable in users.last_seen, written when a user's last connection goes.
 * `lastSeen` is null while the user is online, and for a user never seen.
 */
export class PresenceService {
  /**
   * Every `heartbeatMs`: keeps this node's connections alive in the tracker and reaps those
   * of dead nodes. A round never overlaps the previous one; a failed round is retried by the next.
   */
  private readonly heartbeat: PeriodicJob;

  constructor(
    private readonly tracker: PresenceTracker,
    private readonly store: Pick<MessageStore, "setLastSeen" | "lastSeen">,
    private readonly notifier: PresenceNotifier,
    private readonly clock: Clock,
    log: Logger,
    heartbeatMs: number,
  ) {
    this.heartbeat = new PeriodicJob("presence-heartbeat", () => this.heartbeatRound(), heartbeatMs, log);
  }

  start(): void {
    this.heartbeat.start();
  }

  /** Resolves once the round in progress (if any) is over: the tracker may then be closed. */
  stop(): Promise<void> {
    return this.heartbeat.stop();
  }

  /** Returns how many users changed state. */
  private async heartbeatRound(): Promise<number> {
    const back = await this.tracker.refresh();
    for (const userId of back) this.notifier.presence({ userId, online: true, lastSeen: null });
    const gone = await this.tracker.reap();
    // At once, so a crowd (a dead node's users) shares the store's batched write.
    const failed = (await Promise.allSettled(gone.map((userId) => this.wentOffline(userId)))).find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    return back.length + gone.length;
  }

  async connected(userId: string, connectionId: string): Promise<void> {
    if (await this.tracker.connected(userId, connectionId)) {
      this.notifier.presence({ userId, online: true, lastSeen: null });
    }
  }

  async disconnected(userId: string, connectionId: string): Promise<void> {
    if (await this.tracker.disconnected(userId, connectionId)) await this.wentOffline(userId);
  }

  private async wentOffline(userId: string): Promise<void> {
    const at = this.clock.now();
    // Stored before it is announced, so a snapshot taken on seeing the event has it too; the
    // event goes out even when the database is down (the failure is still reported).
    try {
      await this.store.setLastSeen(userId, at);
    } finally {
      this.notifier.presence({ userId, online: false, lastSeen: at.toISOString() });
    }
  }

  async snapshot(userIds: string[]): Promise<Presence[]> {
    const unique = [...new Set(userIds)];
    const [online, lastSeen] = await Promise.all([this.tracker.online(unique), this.store.lastSeen(unique)]);
    return unique.map((userId) =>
      online.has(userId)
        ? { userId, online: true, lastSeen: null }
        : { userId, online: false, lastSeen: lastSeen.get(userId)?.toISOString() ?? null },
    );
  }
}
