import type { LeaderLock } from "../cluster/LeaderLock";
import type { Logger } from "../log";
import type { MessagingService } from "./MessagingService";

/**
 * Deletes expired messages every `intervalMs`, on one node of the cluster at a time.
 * Expired messages are already invisible (every read filters on expires_at); the sweep
 * only reclaims the space.
 */
export class ExpirySweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly messaging: Pick<MessagingService, "sweepExpired">,
    private readonly lock: LeaderLock,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly onSwept: (count: number) => void = () => {},
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweepNow(), this.intervalMs);
    this.timer.unref();
  }

  /** One sweep now (also what the timer calls); resolves with how many were deleted. */
  sweepNow(): Promise<number> {
    let deleted = 0;
    const run = this.lock
      .runExclusive("expiry-sweep", async () => {
        deleted = await this.messaging.sweepExpired();
        if (deleted > 0) {
          this.onSwept(deleted);
          this.log.info({ deleted }, "expired messages deleted");
        }
      })
      .then(() => deleted)
      .catch((err) => {
        this.log.warn({ err }, "expiry sweep failed; next interval retries");
        return 0;
      });
    this.running = run;
    return run;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
