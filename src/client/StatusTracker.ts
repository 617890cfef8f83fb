/**
 * The status of each message this user sent, as the app renders it: pending → sent →
 * delivered → read (or failed, with the server's reason). It only moves forward, whatever
 * order the acknowledgement and the receipts arrive in (a receipt can beat the ack home).
 *
 * Group messages follow the all-recipients rule: delivered once every recipient has it,
 * read once every recipient read it. The recipients come from `recipientsOf` (the
 * conversation's members as the client's conversation list knows them, the sender left
 * out: see Conversations.recipients). Until the message's conversation is known (a receipt
 * for a message this device has not seen yet), its receipts are kept and counted when it is.
 *
 * Memory is bounded: the oldest statuses are forgotten first. snapshot()/restore() let the
 * client keep them in its storage across reloads (StatusStreamSync).
 */
import type { ErrorCode } from "../protocol/errors";
import type { Status } from "../protocol/events";
import type { ChatMessage } from "./entries";

export type MessageStatus = "pending" | Status | "failed";

export type StatusChange = {
  /** This device's key for the message; absent for one sent from another device. */
  clientMsgId?: string;
  /** The server's id, once it stored the message. */
  messageId?: string;
  conversationId?: string;
  status: MessageStatus;
  /** What the server stored, on the change that follows its acknowledgement (this device's sends). */
  message?: ChatMessage;
  /** Who confirmed it (delivered, read); in a group, whose receipt completed the rule. */
  by?: string;
  /** Why it failed (status "failed"). */
  error?: { code: ErrorCode; message: string };
};

/**
 * Who a message's receipts must come from: `null` for a direct conversation (its one
 * recipient), the recipients of a group, `undefined` while the conversation is unknown.
 */
export type RecipientsOf = (conversationId: string) => string[] | null | undefined;

/** One tracked message: its status, and (group or not yet known) who delivered and read it. */
export type TrackedStatus = { status: Status; conversationId?: string; direct?: true; delivered?: string[]; read?: string[] };

const RANK: Record<MessageStatus, number> = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };

export class StatusTracker {
  private readonly byId = new Map<string, TrackedStatus>();
  private readonly clientIds = new Map<string, string>();

  constructor(
    private readonly emit: (change: StatusChange) => void,
    private readonly recipientsOf: RecipientsOf = () => null,
    private readonly capacity = 5000,
  ) {}

  pending(clientMsgId: string, conversationId?: string): void {
    this.emit({ clientMsgId, conversationId, status: "pending" });
  }

  failed(clientMsgId: string, error: NonNullable<StatusChange["error"]>, conversationId?: string): void {
    this.emit({ clientMsgId, conversationId, status: "failed", error });
  }

  /**
   * Stored by the server; a receipt that came first is kept: the change then repeats that
   * status (without `by`), now with this device's clientMsgId.
   */
  sent(messageId: string, conversationId: string, clientMsgId?: string, message?: ChatMessage): void {
    if (clientMsgId) this.clientIds.set(messageId, clientMsgId);
    const t = this.track(messageId);
    t.conversationId = conversationId;
    if (message && message.to !== null) t.direct = true;
    t.status = this.rule(t);
    this.emit({ clientMsgId, messageId, conversationId, status: t.status, ...(message ? { message } : {}) });
  }

  /**
   * This user's message, seen in its conversation (history): receipts kept for it, or to
   * come, can now count. Tracked quietly: nothing is emitted unless its status moves.
   */
  learn(messageId: string, conversationId: string): void {
    const t = this.byId.get(messageId) ?? this.track(messageId);
    if (t.conversationId) return;
    t.conversationId = conversationId;
    this.settle(messageId, t);
  }

  /** A message of a direct conversation: its one recipient's receipts decide, whatever the chat list holds. */
  noteDirect(messageId: string): void {
    this.track(messageId).direct = true;
  }

  /** The recipients of a conversation became known (its summary arrived): its receipts kept so far can count. */
  recheck(conversationId: string): void {
    for (const [id, t] of this.byId) if (t.conversationId === conversationId && (t.delivered || t.read)) this.settle(id, t);
  }

  /** A receipt (`message:status` from a recipient, live or from status:sync). */
  receipt(messageId: string, status: "delivered" | "read", by: string): void {
    const t = this.track(messageId);
    const recipients = this.recipients(t);
    if (recipients !== null) {
      // A group, or not known yet: who confirmed is what the rule needs.
      t.delivered = add(t.delivered, by);
      if (status === "read") t.read = add(t.read, by);
    } else if (RANK[status] > RANK[t.status]) {
      return this.move(messageId, t, status, by);
    }
    this.settle(messageId, t, by);
  }

  get(messageId: string): Status | undefined {
    return this.byId.get(messageId)?.status;
  }

  get size(): number {
    return this.byId.size;
  }

  /** What is tracked, oldest first, for the client's storage. */
  snapshot(): Array<[string, TrackedStatus]> {
    return [...this.byId];
  }

  /** Statuses kept from an earlier session (they never move back). */
  restore(entries: Array<[string, TrackedStatus]>): void {
    for (const [id, kept] of entries) {
      const t = this.byId.get(id);
      if (!t) this.byId.set(id, { ...kept });
      else if (RANK[kept.status] > RANK[t.status]) t.status = kept.status;
    }
    this.trim();
  }

  /** The status the rule gives now (never lower than what was shown). */
  private rule(t: TrackedStatus): Status {
    const recipients = this.recipients(t);
    let now: Status = t.status;
    if (recipients === null) {
      // Direct: its one recipient (receipts kept from before the conversation was known).
      now = t.read?.length ? "read" : t.delivered?.length ? "delivered" : now;
      delete t.delivered;
      delete t.read;
    } else if (recipients !== undefined && recipients.length > 0) {
      const read = new Set(t.read);
      const delivered = new Set(t.delivered);
      if (recipients.every((r) => read.has(r))) now = "read";
      else if (recipients.every((r) => delivered.has(r))) now = "delivered";
    }
    return RANK[now] > RANK[t.status] ? now : t.status;
  }

  /**
   * A direct message's one recipient is known from the message itself, so its ticks move
   * even when the conversation's summary is not held (the chat list keeps a bounded number).
   */
  private recipients(t: TrackedStatus): string[] | null | undefined {
    if (t.direct) return null;
    return t.conversationId ? this.recipientsOf(t.conversationId) : undefined;
  }

  private settle(messageId: string, t: TrackedStatus, by?: string): void {
    const next = this.rule(t);
    if (next !== t.status) this.move(messageId, t, next, by);
  }

  private move(messageId: string, t: TrackedStatus, status: Status, by?: string): void {
    t.status = status;
    this.emit({ clientMsgId: this.clientIds.get(messageId), messageId, conversationId: t.conversationId, status, ...(by ? { by } : {}) });
  }

  private track(messageId: string): TrackedStatus {
    let t = this.byId.get(messageId);
    if (t) {
      // Most recently touched last: the oldest go first.
      this.byId.delete(messageId);
      this.byId.set(messageId, t);
      return t;
    }
    this.byId.set(messageId, (t = { status: "sent" }));
    this.trim();
    return t;
  }

  private trim(): void {
    while (this.byId.size > this.capacity) {
      const oldest = this.byId.keys().next().value as string;
      this.byId.delete(oldest);
      this.clientIds.delete(oldest);
    }
  }
}

const add = (list: string[] | undefined, user: string): string[] => (list?.includes(user) ? list : [...(list ?? []), user]);
