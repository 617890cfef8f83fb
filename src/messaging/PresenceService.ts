import type { Clock } from "../clock";
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
  constructor(
    private readonly tracker: PresenceTracker,
    private readonly store: Pick<MessageStore, "setLastSeen" | "lastSeen">,
    private readonly notifier: PresenceNotifier,
    private readonly clock: Clock,
  ) {}

  async connected(userId: string, connectionId: string): Promise<void> {
    if (await this.tracker.connected(userId, connectionId)) {
      this.notifier.presence({ userId, online: true, lastSeen: null });
    }
  }

  async disconnected(userId: string, connectionId: string): Promise<void> {
    if (!(await this.tracker.disconnected(userId, connectionId))) return;
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
