import type { Clock } from "../clock";
import type { Logger } from "../log";
import { AppError, type ConversationListRequest, type ConversationListResult, type HistoryResult, type MediaAttachment, type Message, type SendResult } from "../protocol";
import { contentLength, LIMITS } from "../protocol/schemas";
import type { EntryKind } from "./entryRules";
import {
  noMedia,
  type AppendRequest,
  type MessageStore,
  type MediaAttacher,
  type MessagingMetrics,
  type Notifier,
  type OwnCopy,
  type PartitionReport,
  type SendTarget,
  type StatusChange,
} from "./ports";
import { decodeListCursor, encodeListCursor } from "./listCursor";
import { LiveDelivery } from "./LiveDelivery";
import { messageIdAt } from "./messageIds";
import type { StatusStream } from "./StatusStream";
import { noSuchConversation, notAMember } from "./routing";

export type MessagingOptions = {
  messageTtlMs: number;
  maxContentLength: number;
  /** How long after sending its sender may edit a message. */
  editWindowMs: number;
  /** How long after sending its sender may delete a message for everyone. */
  deleteWindowMs: number;
};

/** With `media`, `content` is the caption and may be "". */
export type SendCommand = { clientMsgId: string; target: SendTarget; content: string; media?: MediaAttachment };
/** An edit (content: new text), delete (content: "") or reaction (content: emoji, "" removes). */
export type EntryCommand = { clientMsgId: string; messageId: string; content: string };
export type HistoryCommand = { conversationId: string; beforeSeq?: number; afterSeq?: number; limit?: number };

/**
 * The messaging core: send, receipts, backlog, history, conversations. It knows nothing of
 * Socket.IO or SQL; callers pass the authenticated user id, so a payload can never choose
 * who acts.
 */
export class MessagingService {
  private readonly live: LiveDelivery;

  constructor(
    private readonly store: MessageStore,
    private readonly notifier: Notifier,
    private readonly clock: Clock,
    private readonly options: MessagingOptions,
    private readonly log: Logger,
    private readonly metrics: MessagingMetrics,
    /** Seals the cursors of live `message:status` events; sweeps the stream with the messages. */
    private readonly stream: StatusStream,
    private readonly media: MediaAttacher = noMedia,
  ) {
    this.live = new LiveDelivery(store, notifier, clock, (recipient, ids) => this.confirmDelivered(recipient, ids), log, metrics);
  }

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
    // Checked before the write, which then holds the upload by its foreign key (docs/media.md).
    const media = cmd.media ? await this.media.attach(from, cmd.media) : null;
    const createdAt = this.clock.now();
    return this.commit(origin, {
      kind: "text",
      media,
      id: messageIdAt(createdAt),
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
    const createdAt = this.clock.now();
    return this.commit(origin, {
      kind,
      id: messageIdAt(createdAt),
      from,
      clientMsgId: cmd.clientMsgId,
      refId: cmd.messageId,
      content: kind === "delete" ? "" : cmd.content,
      createdAt,
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
    if (!result.duplicate) this.publish(req.from, result.message, result.recipients, origin);
    return { message: result.message, duplicate: result.duplicate };
  }

  /**
   * Offers a just-stored log entry live: to each recipient (the delivery rows its commit
   * wrote, so who gets it is decided by its seq, never by a room), and to the sender's other
   * devices but `origin`. Group changes (GroupService) go out this way too.
   */
  publish(from: string, message: Message, recipients: string[], origin?: string): void {
    this.metrics.stored(1);
    this.live.offerAll(recipients, message, origin ? { from, origin } : { from });
  }

  /** Another node's fan-out (Notifier.fanOut) reached this node: offer to the devices here. */
  offerHere(recipients: string[], message: Message, own?: OwnCopy): void {
    this.live.offerHere(recipients, message, own);
  }

  /** Resolves when every live offer made so far got its receipt stored or timed out. */
  settleOffers(): Promise<void> {
    return this.live.settleOffers();
  }

  /** See LiveDelivery.redeliver: what this node's devices of `recipients` left unconfirmed. */
  redeliver(recipients: string[], olderThanMs: number, limit: number): Promise<number> {
    return this.live.redeliver(recipients, olderThanMs, limit);
  }

  /** See LiveDelivery.recover: at once, what a dead node left unconfirmed. */
  recover(recipients: string[], window: { createdAfter: Date; createdBefore: Date }, pageSize: number, maxOffers?: number): Promise<number> {
    return this.live.recover(recipients, window, pageSize, maxOffers);
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

  /**
   * `origin` names the reading connection: the reader's other devices are told, it is not.
   * Messages of a group the reader left or was removed from are never marked (the store
   * skips them); naming one gets FORBIDDEN. That is looked up only when some id did not
   * change, so an ordinary read costs its one statement.
   */
  async markRead(reader: string, messageIds: string[], origin?: string): Promise<number> {
    const at = this.clock.now();
    const ids = [...new Set(messageIds)];
    const changed = await this.store.markRead(reader, ids, at);
    if (changed.length < ids.length && (await this.store.departedFrom(reader, ids))) {
      throw new AppError("FORBIDDEN", "you are no longer a member of the conversation of one of these messages");
    }
    this.metrics.read(changed.length);
    this.sendReceipts(changed, "read", reader, at);
    if (changed.length > 0) {
      const update = {
        messageIds: changed.map((c) => c.messageId),
        status: "read" as const,
        by: reader,
        at: at.toISOString(),
        cursor: this.stream.cursor(reader, maxPos(changed.map((c) => c.ownPos!))),
      };
      this.notifier.status(reader, update, origin);
    }
    return changed.length;
  }

  /**
   * Tells each sender, in one `message:status` per sender, which of their messages moved;
   * its cursor is that of the last of them in the sender's stream.
   */
  private sendReceipts(changed: StatusChange[], status: "delivered" | "read", by: string, at: Date): void {
    const bySender = new Map<string, StatusChange[]>();
    for (const change of changed) {
      const mine = bySender.get(change.from) ?? [];
      mine.push(change);
      bySender.set(change.from, mine);
    }
    for (const [sender, mine] of bySender) {
      const messageIds = mine.map((c) => c.messageId);
      const cursor = this.stream.cursor(sender, maxPos(mine.map((c) => c.pos)));
      this.notifier.status(sender, { messageIds, status, by, at: at.toISOString(), cursor });
    }
  }

  backlog(recipient: string, limit: number): Promise<Message[]> {
    return this.store.backlog(recipient, this.clock.now(), limit);
  }

  /**
   * Only the seqs the caller may see: a member from the entry that added them on, someone
   * who left or was removed up to the entry that removed them (asking past it: FORBIDDEN).
   */
  async history(userId: string, cmd: HistoryCommand): Promise<HistoryResult> {
    const seen = await this.store.visibility(cmd.conversationId, userId);
    if (seen.state === "not_found") throw noSuchConversation();
    if (seen.state === "stranger") throw notAMember();
    const untilSeq = seen.state === "former" ? seen.untilSeq : undefined;
    if (untilSeq !== undefined && cmd.afterSeq !== undefined && cmd.afterSeq >= untilSeq) {
      throw new AppError("FORBIDDEN", "you are no longer a member: nothing after the entry that removed you is yours to see");
    }
    return this.store.history(
      cmd.conversationId,
      { beforeSeq: cmd.beforeSeq, afterSeq: cmd.afterSeq, limit: cmd.limit ?? LIMITS.historyDefault, fromSeq: seen.fromSeq, untilSeq },
      this.clock.now(),
    );
  }

  /** `conversation:list`: the whole list, a page of it, or the conversations asked for by id or peer. */
  async listConversations(userId: string, req: ConversationListRequest = {}): Promise<ConversationListResult> {
    const before = req.before === undefined ? undefined : decodeListCursor(req.before);
    const page = await this.store.listConversations(userId, this.clock.now(), {
      limit: req.limit,
      before,
      ids: req.conversationIds,
      withUser: req.peer,
    });
    return { conversations: page.conversations, hasMore: page.next !== null, next: page.next && encodeListCursor(page.next) };
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

  private logPartitions(report: PartitionReport): void {
    if (report.created.length > 0) this.log.info({ partitions: report.created }, "message partitions created ahead");
    for (const d of report.dropped) this.log.info({ partition: d.name, messages: d.messages }, "expired message partition dropped");
    if (report.handDropped.length > 0) {
      this.log.warn({ partitions: report.handDropped }, "message partitions dropped outside the sweep: their messages are gone as if expired");
    }
    if (report.movedFromDefault > 0) {
      this.log.warn({ messages: report.movedFromDefault }, "messages written while their day had no partition moved into it");
    }
  }

  /**
   * Drops the message partitions whose rows all expired and creates those of the days
   * ahead, removes the other expired rows in bounded batches, then their status stream
   * changes (which live as long as their message); returns how many messages went.
   */
  async sweepExpired(batchSize = 1000, maxBatches = 100): Promise<number> {
    const report = await this.store.maintainPartitions(this.clock.now());
    this.logPartitions(report);
    let total = report.dropped.reduce((n, d) => n + d.messages, 0);
    for (let i = 0; i < maxBatches; i++) {
      const { messages, keys } = await this.store.deleteExpired(this.clock.now(), batchSize);
      total += messages;
      if (messages < batchSize && keys < batchSize) break;
    }
    await this.stream.sweepExpired(batchSize, maxBatches);
    return total;
  }
}

/** The highest of stream positions (bigints as text). */
const maxPos = (positions: string[]): string => positions.reduce((a, b) => (BigInt(b) > BigInt(a) ? b : a));
