import type { Logger } from "../log";
import type { MessagingService } from "./MessagingService";

/**
 * The periodic retry behind at-least-once delivery: every `afterMs / 2`, messages that the
 * users connected to this node have not confirmed `afterMs` after sending are offered again
 * to those devices, at most `batch` per round, until confirmed or expired.
 */
export class Redeliverer {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> = Promise.resolve();
  private readonly waiting = new Set<string>();

  constructor(
    private readonly messaging: Pick<MessagingService, "redeliver">,
    private readonly localUsers: () => string[],
    private readonly afterMs: number,
    private readonly log: Logger,
    private readonly batch = 500,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.runOnce(), Math.max(100, Math.round(this.afterMs / 2)));
    this.timer.unref();
  }

  runOnce(): Promise<number> {
    const run = this.messaging
      .redeliver(this.localUsers(), this.afterMs, this.batch, this.waiting)
      .catch((err) => {
        this.log.warn({ err }, "redelivery round failed; next round retries");
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
