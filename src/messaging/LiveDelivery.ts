import type { Clock } from "../clock";
import type { Logger } from "../log";
import type { Message } from "../protocol";
import type { MessageStore, MessagingMetrics, Notifier, OwnCopy, RedeliveryReason } from "./ports";

/** Stores a device's confirmation; resolves how many delivery rows changed state. */
export type ConfirmDelivered = (recipient: string, messageIds: string[]) => Promise<number>;

/**
 * Live offers of stored messages to recipients' devices, and the offers made again:
 * periodically for what nobody confirmed, and at once for what a dead node left. Every
 * offer is best effort: a message nobody confirms stays `sent` and comes back.
 */
export class LiveDelivery {
  /** Live offers waiting for a receipt: shutdown lets them finish, or the receipt is lost. */
  private readonly offers = new Set<Promise<void>>();
  /**
   * The same offers by "{recipient} {messageId}": a redelivery round skips a message whose
   * offer from this node is still waiting, so a device is not sent it twice at once.
   */
  private readonly awaiting = new Map<string, Promise<void>>();

  constructor(
    private readonly store: MessageStore,
    private readonly notifier: Notifier,
    private readonly clock: Clock,
    private readonly confirm: ConfirmDelivered,
    private readonly log: Logger,
    private readonly metrics: MessagingMetrics,
  ) {}

  /**
   * Offers a just-stored message to all its recipients' devices, and the sender's other
   * devices (`own`), on every node: one inter-node message for the whole fan-out
   * (Notifier.fanOut), direct or group, and this node offers to its own devices. Every
   * device is offered a message by the node it is connected to, which is what keeps each
   * device's live stream in seq order (transport/orderedEmit.ts); no step here, or on any
   * node, costs a Redis round trip per recipient, and receipts are stored by the node
   * that got them.
   */
  offerAll(recipients: string[], message: Message, own?: OwnCopy): void {
    this.notifier.fanOut(recipients, message, own);
    this.offerHere(recipients, message, own);
  }

  /** Offers to this node's live devices of `recipients` and of the sender (another node's fan-out, or our own). */
  offerHere(recipients: string[], message: Message, own?: OwnCopy): void {
    for (const recipient of this.notifier.localRecipients(recipients)) void this.deliverLive(recipient, message);
    if (own) this.notifier.ownCopyHere(own.from, message, own.origin);
  }

  /** Best effort: a message nobody confirms stays `sent` and comes back (backlog, redelivery). */
  private deliverLive(recipient: string, message: Message, reason?: RedeliveryReason): Promise<void> {
    // Only the id is kept while the receipt is awaited (up to DELIVERY_ACK_TIMEOUT_MS), not
    // the content: offers to a device that stopped reading must not hold every message.
    const messageId = message.id;
    const key = `${recipient} ${messageId}`;
    const offer = this.notifier
      .deliverLocal(recipient, message)
      .then((confirmed) => (confirmed ? this.confirm(recipient, [messageId]) : -1))
      .then(
        // A re-offer the device confirmed while the row was already delivered: it reached a
        // device twice (another offer or the backlog got there first).
        (changed) => void (reason && changed === 0 && this.metrics.redelivery(reason, "redundant", 1)),
        (err) => this.log.warn({ err, messageId, recipient }, "live delivery receipt not stored"),
      );
    this.offers.add(offer);
    this.awaiting.set(key, offer);
    void offer.finally(() => {
      this.offers.delete(offer);
      if (this.awaiting.get(key) === offer) this.awaiting.delete(key);
    });
    return offer;
  }

  /** Resolves when every live offer made so far got its receipt stored or timed out. */
  async settleOffers(): Promise<void> {
    await Promise.allSettled([...this.offers]);
  }

  /**
   * Offers again, to the devices connected to this node, what `recipients` have not
   * confirmed `olderThanMs` after it was sent. Each node does this for its own connections,
   * so the work splits across the cluster with no coordination. Returns how many were offered.
   */
  async redeliver(recipients: string[], olderThanMs: number, limit: number): Promise<number> {
    if (recipients.length === 0) return 0;
    const now = this.clock.now();
    const pending = await this.store.undelivered(recipients, new Date(now.getTime() - olderThanMs), now, limit);
    let offered = 0;
    let skipped = 0;
    for (const { recipient, message } of pending) {
      // An earlier offer is still waiting for its receipt: it would be the same message twice.
      if (this.awaiting.has(`${recipient} ${message.id}`)) skipped++;
      else {
        offered++;
        void this.deliverLive(recipient, message, "periodic");
      }
    }
    this.metrics.redelivery("periodic", "offered", offered);
    this.metrics.redelivery("periodic", "skipped", skipped);
    return offered;
  }

  /**
   * After another node died: offers to this node's devices of `recipients` what they have
   * not confirmed among the messages created in `(createdAfter, createdBefore]`, right away
   * rather than at the next periodic round. One page of offers is in flight at a time (the
   * next page waits for the receipts or timeouts of this one), each message is offered at
   * most once per round, and one whose offer from this node is still waiting is not offered
   * again. Returns how many were offered.
   */
  async recover(
    recipients: string[],
    window: { createdAfter: Date; createdBefore: Date },
    pageSize: number,
    maxOffers = pageSize * 20,
  ): Promise<number> {
    if (recipients.length === 0) return 0;
    const seen = new Set<string>();
    let offered = 0;
    let skipped = 0;
    while (seen.size < maxOffers) {
      // Rows this round already offered may still be `sent` (timed out): read past them.
      const limit = pageSize + seen.size;
      const pending = await this.store.undelivered(recipients, window.createdBefore, this.clock.now(), limit, window.createdAfter);
      const page: Promise<void>[] = [];
      for (const { recipient, message } of pending) {
        const key = `${recipient} ${message.id}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const waiting = this.awaiting.get(key);
        if (waiting) {
          skipped++;
          page.push(waiting);
        } else {
          offered++;
          page.push(this.deliverLive(recipient, message, "node_death"));
        }
      }
      if (page.length === 0) break;
      await Promise.all(page);
      if (pending.length < limit) break;
    }
    this.metrics.redelivery("node_death", "offered", offered);
    this.metrics.redelivery("node_death", "skipped", skipped);
    return offered;
  }
}
