import type { Logger } from "../log";
import type { MediaService } from "../media/MediaService";
import type { MessagingService } from "./MessagingService";
import type { LeaderLock } from "./ports";
import { PeriodicJob } from "./PeriodicJob";

/**
 * Every `intervalMs`, on one node of the cluster at a time: creates the message partitions
 * of the next days and drops the past ones whose messages all expired (storage/partitions.ts,
 * docs/storage.md), deletes the other expired rows, then the media bytes no retained message
 * refers to any more (and uploads never sent). Expired messages are already invisible
 * (every read filters on expires_at); the sweep only reclaims the space.
 */
export class ExpirySweeper extends PeriodicJob {
  constructor(
    messaging: Pick<MessagingService, "sweepExpired">,
    lock: LeaderLock,
    intervalMs: number,
    log: Logger,
    onSwept: (count: number) => void = () => {},
    media?: Pick<MediaService, "sweep">,
  ) {
    const sweep = async () => {
      let deleted = 0;
      await lock.runExclusive("expiry-sweep", async () => {
        deleted = await messaging.sweepExpired();
        if (deleted > 0) {
          onSwept(deleted);
          log.info({ deleted }, "expired messages deleted");
        }
        // After the messages: what they carried may have lost its last reference just now.
        const removed = (await media?.sweep()) ?? 0;
        if (removed > 0) log.info({ removed }, "unreferenced media removed");
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
