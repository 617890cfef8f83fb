import type { Clock } from "../clock";
import type { Logger } from "../log";
import type { PresenceTracker } from "../cluster/PresenceTracker";
import type { Presence } from "../protocol";
import type { MessageStore } from "./ports";

export interface PresenceNotifier {
  presence(update: Presence): void;
}

/**
 * Online/offline and last seen. Online state lives in the tracker (memory or Redis);
 * last seen is durable in users.last_seen, written when a user's last connection goes.
 * `lastSeen` is null while the user is online, and for a user never seen.
 */
export class PresenceService {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly tracker: PresenceTracker,
    private readonly store: Pick<MessageStore, "setLastSeen" | "lastSeen">,
    private readonly notifier: PresenceNotifier,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Keeps this node's connections alive in the tracker and reaps those of dead nodes. */
  start(intervalMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async tick(): Promise<void> {
    try {
      for (const userId of await this.tracker.refresh()) this.notifier.presence({ userId, online: true, lastSeen: null });
      for (const userId of await this.tracker.reap()) await this.wentOffline(userId);
    } catch (err) {
      this.log.warn({ err }, "presence refresh failed; retrying next tick");
    }
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
    this.notifier.presence({ userId, online: false, lastSeen: at.toISOString() });
    await this.store.setLastSeen(userId, at);
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
