import type { Logger } from "../log";
import type { MessagingService } from "./MessagingService";
import type { LeaderLock } from "./ports";
import { PeriodicJob } from "./PeriodicJob";

/**
 * Deletes expired messages every `intervalMs`, on one node of the cluster at a time.
 * Expired messages are already invisible (every read filters on expires_at); the sweep
 * only reclaims the space.
 */
export class ExpirySweeper extends PeriodicJob {
  constructor(
    messaging: Pick<MessagingService, "sweepExpired">,
    lock: LeaderLock,
    intervalMs: number,
    log: Logger,
    onSwept: (count: number) => void = () => {},
  ) {
    const sweep = async () => {
      let deleted = 0;
      await lock.runExclusive("expiry-sweep", async () => {
        deleted = await messaging.sweepExpired();
        if (deleted > 0) {
          onSwept(deleted);
          log.info({ deleted }, "expired messages deleted");
        }
      });
      return deleted;
    };
    super("expiry-sweep", sweep, intervalMs, log);
  }

  /** One sweep now; resolves with how many messages were deleted. */
  sweepNow(): Promise<number> {
    return this.runOnce();
  }
}
