import type { Logger } from "../log";
import type { MessagingService } from "./MessagingService";
import { PeriodicJob } from "./PeriodicJob";

/**
 * The periodic retry behind at-least-once delivery: every `afterMs / 2`, messages that the
 * users connected to this node have not confirmed `afterMs` after sending are offered again
 * to those devices, at most `batch` per round, until confirmed or expired.
 */
export class Redeliverer extends PeriodicJob {
  /** Offers still waiting for a receipt: not offered again until they settle. */
  private readonly waiting = new Set<string>();

  constructor(
    messaging: Pick<MessagingService, "redeliver">,
    localUsers: () => string[],
    afterMs: number,
    log: Logger,
    batch = 500,
  ) {
    // The round runs only after construction, when `this.waiting` exists.
    const round = () => messaging.redeliver(localUsers(), afterMs, batch, this.waiting);
    super("redelivery", round, Math.max(100, Math.round(afterMs / 2)), log);
  }
}
