import { systemClock, type Clock } from "../clock";
import type { Logger } from "../log";
import type { MessagingService } from "./MessagingService";
import { PeriodicJob } from "./PeriodicJob";

/**
 * Another node stopped heartbeating. `aliveUntil` is the deadline of its last heartbeat,
 * read from its own clock, the clock that stamped its messages' `createdAt`: nothing it
 * created can be younger, whatever the skew between nodes.
 */
export type NodeDeath = { nodeId: string; aliveUntil: Date };

/**
 * The retries behind at-least-once delivery, to the devices connected to this node:
 * - periodic: every `afterMs / 2`, messages not confirmed `afterMs` after sending are offered
 *   again, at most `batch` per round, until confirmed or expired;
 * - after a node's death: its live offers, and the receipts coming back to it, died with it,
 *   so what it offered to devices connected here may stay `sent` although they are here.
 *   `nodeDied` offers them promptly the messages younger than `afterMs` (older ones are the
 *   periodic round's), instead of letting them wait up to 1.5 × `afterMs`.
 */
export class Redeliverer extends PeriodicJob {
  /** Recovery rounds run one after the other: the second finds the first's work confirmed. */
  private recovery: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly messaging: Pick<MessagingService, "redeliver" | "recover">,
    private readonly localUsers: () => string[],
    private readonly afterMs: number,
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
    private readonly batch = 500,
  ) {
    super("redelivery", () => messaging.redeliver(localUsers(), afterMs, batch), Math.max(100, Math.round(afterMs / 2)), logger);
  }

  /** A prompt, targeted round for `death`; resolves with how many messages were offered. */
  nodeDied(death: NodeDeath): Promise<number> {
    if (this.stopped) return Promise.resolve(0); // shutting down: settleOffers is under way
    const round = this.recovery.then(async () => {
      const started = Date.now();
      const createdAfter = new Date(this.clock.now().getTime() - this.afterMs);
      const offered = await this.messaging.recover(this.localUsers(), { createdAfter, createdBefore: death.aliveUntil }, this.batch);
      this.logger.info({ deadNode: death.nodeId, offered, ms: Date.now() - started }, "node died: unconfirmed messages offered again");
      return offered;
    });
    const settled = round.catch((err) => {
      this.logger.warn({ err, deadNode: death.nodeId }, "recovery after a node's death failed; periodic redelivery remains");
      return 0;
    });
    this.recovery = settled;
    return settled;
  }

  override async stop(): Promise<void> {
    this.stopped = true;
    await super.stop();
    await this.recovery;
  }
}
