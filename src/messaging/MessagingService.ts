import { v7 as uuidv7 } from "uuid";
import type { Clock } from "../clock";
import type { Logger } from "../log";
import { AppError, type ConversationSummary, type HistoryResult, type Message, type SendResult } from "../protocol";
import { contentLength, LIMITS } from "../protocol/schemas";
import type { EntryKind } from "./entryRules";
import {
  noMetrics,
  type AppendRequest,
  type MessageStore,
  type MessagingMetrics,
  type Notifier,
  type RedeliveryReason,
  type SendTarget,
  type StatusChange,
} from "./ports";
import { noSuchConversation, notAMember } from "./routing";

export type MessagingOptions = {
  messageTtlMs: number;
  maxContentLength: number;
  /** How long after sending its sender may edit a message. */
  editWindowMs: number;
  /** How long after sending its sender may delete a message for everyone. */
  deleteWindowMs: number;
};

export type SendCommand = { clientMsgId: string; target: SendTarget; content: string };
/** An edit (content: new text), delete (content: "") or reaction (content: emoji, "" removes). */
export type EntryCommand = { clientMsgId: string; messageId: string; content: string };
export type HistoryCommand = { conversationId: string; beforeSeq?: number; afterSeq?: number; limit?: number };

/**
 * The messaging core: send, receipts, backlog, history, conversations. It knows nothing of
 * Socket.IO or SQL; callers pass the authenticated user id, so a payload can never choose
 * who acts.
 */
export class MessagingService {
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
    private readonly options: MessagingOptions,
    private readonly log: Logger,
    private readonly metrics: MessagingMetrics = noMetrics,
  ) {}

  async connect(userId: string): Promise<void> {
    await this.store.ensureUser(userId);
  }

  /**
   * Resolves only once the message is committed; live delivery starts after that.
   * `origin` names the sending connection: the sender's other devices get the message too.
   */
  async send(from: string, cmd: SendCommand, origin?: string): Promise<SendResult> {
    this.checkLength(cmd.content);
    if ("to" in cmd.target && cmd.target.to === from) {
      throw new AppError("BAD_REQUEST", "cannot send a direct message to yourself");
    }
    const createdAt = this.clock.now();
    return this.commit(origin, {
      kind: "text",
      id: uuidv7(),
      from,
      clientMsgId: cmd.clientMsgId,
      target: cmd.target,
      content: cmd.content,
      createdAt,
      expiresAt: new Date(createdAt.getTime() + this.options.messageTtlMs),
    });
  }

  /**
   * Edit, delete or react: an entry of the conversation's log, stored, acknowledged and
   * delivered like a text message. The rules (entryRules.ts) are applied by the store in
   * the commit, against the message as it stands then.
   */
  async entry(from: string, kind: EntryKind, cmd: EntryCommand, origin?: string): Promise<SendResult> {
    if (kind === "edit") this.checkLength(cmd.content);
    return this.commit(origin, {
      kind,
      id: uuidv7(),
      from,
      clientMsgId: cmd.clientMsgId,
      refId: cmd.messageId,
      content: kind === "delete" ? "" : cmd.content,
      createdAt: this.clock.now(),
      windowMs: kind === "edit" ? this.options.editWindowMs : kind === "delete" ? this.options.deleteWindowMs : null,
    });
  }

  private checkLength(content: string): void {
    // A string has at most as many code points as UTF-16 units: count only when it matters.
    const max = this.options.maxContentLength;
    if (content.length > max && contentLength(content) > max) {
      throw new AppError("TOO_LARGE", `content is longer than ${max} characters`);
    }
  }

  /** Stores, then offers to the recipients and to the sender's other devices (not to `origin`). */
  private async commit(origin: string | undefined, req: AppendRequest): Promise<SendResult> {
    const result = await this.store.append(req);
    if (!result.duplicate) {
      this.metrics.stored(1);
      for (const recipient of result.recipients) void this.deliverLive(recipient, result.message);
      this.notifier.ownCopy(req.from, result.message, origin);
    }
    return { message: result.message, duplicate: result.duplicate };
  }

  /** Best effort: a message nobody confirms stays `sent` and comes back (backlog, redelivery). */
  private deliverLive(
    recipient: string,
    message: Message,
    scope: "cluster" | "local" = "cluster",
    reason?: RedeliveryReason,
  ): Promise<void> {
    // Only the id is kept while the receipt is awaited (up to DELIVERY_ACK_TIMEOUT_MS), not
    // the content: offers to a device that stopped reading must not hold every message.
    const messageId = message.id;
    const key = `${recipient} ${messageId}`;
    const offer = this.notifier
      .deliver(recipient, message, scope)
      .then((confirmed) => (confirmed ? this.confirmDelivered(recipient, [messageId]) : -1))
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
        void this.deliverLive(recipient, message, "local", "periodic");
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
          page.push(this.deliverLive(recipient, message, "local", "node_death"));
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

  /** A device of `recipient` has these messages; returns how many changed state. */
  async confirmDelivered(recipient: string, messageIds: string[]): Promise<number> {
    if (messageIds.length === 0) return 0;
    const at = this.clock.now();
    const changed = await this.store.markDelivered(recipient, messageIds, at);
    this.metrics.delivered(changed.length);
    this.sendReceipts(changed, "delivered", recipient, at);
    return changed.length;
  }

  /** `origin` names the reading connection: the reader's other devices are told, it is not. */
  async markRead(reader: string, messageIds: string[], origin?: string): Promise<number> {
    const at = this.clock.now();
    const changed = await this.store.markRead(reader, [...new Set(messageIds)], at);
    this.metrics.read(changed.length);
    this.sendReceipts(changed, "read", reader, at);
    if (changed.length > 0) {
      const update = { messageIds: changed.map((c) => c.messageId), status: "read" as const, by: reader, at: at.toISOString() };
      this.notifier.status(reader, update, origin);
    }
    return changed.length;
  }

  /** Tells each sender, in one `message:status` per sender, which of their messages moved. */
  private sendReceipts(changed: StatusChange[], status: "delivered" | "read", by: string, at: Date): void {
    const bySender = new Map<string, string[]>();
    for (const { messageId, from } of changed) {
      const ids = bySender.get(from) ?? [];
      ids.push(messageId);
      bySender.set(from, ids);
    }
    for (const [sender, messageIds] of bySender) {
      this.notifier.status(sender, { messageIds, status, by, at: at.toISOString() });
    }
  }

  backlog(recipient: string, limit: number): Promise<Message[]> {
    return this.store.backlog(recipient, this.clock.now(), limit);
  }

  async history(userId: string, cmd: HistoryCommand): Promise<HistoryResult> {
    await this.requireMember(cmd.conversationId, userId);
    return this.store.history(
      cmd.conversationId,
      { beforeSeq: cmd.beforeSeq, afterSeq: cmd.afterSeq, limit: cmd.limit ?? LIMITS.historyDefault },
      this.clock.now(),
    );
  }

  listConversations(userId: string): Promise<ConversationSummary[]> {
    return this.store.listConversations(userId, this.clock.now());
  }

  async createGroup(creator: string, title: string, members: string[]): Promise<string> {
    const all = new Set([creator, ...members]);
    if (all.size < 2 || all.size > LIMITS.groupMembers) {
      throw new AppError("BAD_REQUEST", `a group has 2-${LIMITS.groupMembers} members, the creator included`);
    }
    const summary = await this.store.createGroup({
      id: uuidv7(),
      title,
      creator,
      members: [...all],
      at: this.clock.now(),
    });
    for (const member of summary.members) this.notifier.conversationCreated(member, summary);
    return summary.id;
  }

  /** Typing comes often: one read both checks membership and names who to tell. */
  async typing(userId: string, conversationId: string, typing: boolean): Promise<void> {
    const members = await this.store.members(conversationId);
    if (!members) throw noSuchConversation();
    if (!members.includes(userId)) throw notAMember();
    this.notifier.typing(
      members.filter((m) => m !== userId),
      { conversationId, userId, typing },
    );
  }

  /** Removes expired messages in bounded batches; returns how many went. */
  async sweepExpired(batchSize = 1000, maxBatches = 100): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxBatches; i++) {
      const n = await this.store.deleteExpired(this.clock.now(), batchSize);
      total += n;
      if (n < batchSize) break;
    }
    return total;
  }

  private async requireMember(conversationId: string, userId: string): Promise<void> {
    const membership = await this.store.membership(conversationId, userId);
    if (membership === "not_found") throw noSuchConversation();
    if (membership === "not_member") throw notAMember();
  }
}
