import type { Clock } from "../clock";
import { AppError } from "../protocol";
import type { PushStore } from "./pushPorts";

/**
 * Push registrations of the authenticated user's devices. The rules (a pushkey moves to
 * whoever registered it last; only one's own can be removed) are here; the delivery of
 * pushes is PushWorker's.
 */
export class PushService {
  constructor(
    private readonly store: PushStore,
    private readonly clock: Clock,
  ) {}

  async register(userId: string, deviceId: string | null, pushkey: string, appId: string): Promise<void> {
    await this.store.register({ pushkey, userId, appId, deviceId, at: this.clock.now() });
  }

  /**
   * Removes one of the caller's pushkeys. A pushkey nobody holds answers `removed: 0` (so a
   * repeated unregister is harmless); someone else's is refused and stays.
   */
  async unregister(userId: string, pushkey: string): Promise<number> {
    const { removed, foreign } = await this.store.unregister(userId, pushkey);
    if (foreign) throw new AppError("BAD_REQUEST", "push:unregister: that pushkey belongs to another user");
    return removed;
  }
}
