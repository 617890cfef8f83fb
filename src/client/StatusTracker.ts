/**
 * The status of each message this user sent, as the app renders it: pending → sent →
 * delivered → read (or failed, with the server's reason). It only moves forward, whatever
 * order the acknowledgement and the receipts arrive in (a receipt can beat the ack home).
 * Memory is bounded: the oldest statuses are forgotten first.
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
  /** Who confirmed it (delivered, read). */
  by?: string;
  /** Why it failed (status "failed"). */
  error?: { code: ErrorCode; message: string };
};

const RANK: Record<MessageStatus, number> = { failed: -1, pending: 0, sent: 1, delivered: 2, read: 3 };

export class StatusTracker {
  private readonly byId = new Map<string, Status>();
  private readonly clientIds = new Map<string, string>();

  constructor(
    private readonly emit: (change: StatusChange) => void,
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
    const status = this.advance(messageId, "sent") ?? this.byId.get(messageId)!;
    this.emit({ clientMsgId, messageId, conversationId, status, ...(message ? { message } : {}) });
  }

  /** A receipt (`message:status` from a recipient). */
  receipt(messageId: string, status: "delivered" | "read", by: string): void {
    if (this.advance(messageId, status) === undefined) return;
    this.emit({ clientMsgId: this.clientIds.get(messageId), messageId, status, by });
  }

  get(messageId: string): Status | undefined {
    return this.byId.get(messageId);
  }

  get size(): number {
    return this.byId.size;
  }

  /** Returns the new status, or undefined when it would not move forward. */
  private advance(messageId: string, status: Status): Status | undefined {
    const known = this.byId.get(messageId);
    if (known && RANK[known] >= RANK[status]) return undefined;
    this.byId.delete(messageId);
    this.byId.set(messageId, status);
    if (this.byId.size > this.capacity) {
      const oldest = this.byId.keys().next().value as string;
      this.byId.delete(oldest);
      this.clientIds.delete(oldest);
    }
    return status;
  }
}
