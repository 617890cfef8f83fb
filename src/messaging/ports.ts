/**
 * What the messaging core needs from the outside world, as small interfaces: storage
 * (storage/SqlMessageStore) and a way to reach users' devices (transport/SocketNotifier).
 */
import type { ConversationSummary, HistoryResult, Message, StatusUpdate, TypingEvent } from "../protocol";

export type SendTarget = { to: string } | { conversationId: string };

export type AppendRequest = {
  id: string;
  from: string;
  clientMsgId: string;
  target: SendTarget;
  content: string;
  createdAt: Date;
  expiresAt: Date;
};

export type AppendResult =
  | { duplicate: false; message: Message; recipients: string[] }
  | { duplicate: true; message: Message };

/** A message whose status just moved, with its sender (who is told). */
export type StatusChange = { messageId: string; from: string };

export type HistoryQuery = { beforeSeq?: number; afterSeq?: number; limit: number };

export type Membership = "member" | "not_member" | "not_found";

export type NewGroup = { id: string; title: string; creator: string; members: string[]; at: Date };

/** Durable storage. Every method throws StorageUnavailableError when the database fails. */
export interface MessageStore {
  ensureUser(userId: string): Promise<void>;
  /**
   * Stores the message, its seq and one delivery row per recipient in one commit; resolves
   * only after COMMIT. A (from, clientMsgId) already stored answers the original.
   * Concurrent calls may share a commit (group commit).
   */
  append(req: AppendRequest): Promise<AppendResult>;
  markDelivered(recipient: string, messageIds: string[], at: Date): Promise<StatusChange[]>;
  markRead(reader: string, messageIds: string[], at: Date): Promise<StatusChange[]>;
  /**
   * Undelivered, unexpired messages for any of `recipients`, created before `createdBefore`
   * (and after `createdAfter` when given), oldest delivery row first.
   */
  undelivered(
    recipients: string[],
    createdBefore: Date,
    now: Date,
    limit: number,
    createdAfter?: Date,
  ): Promise<{ recipient: string; message: Message }[]>;
  /** Oldest undelivered, unexpired messages for the recipient. */
  backlog(recipient: string, now: Date, limit: number): Promise<Message[]>;
  history(conversationId: string, query: HistoryQuery, now: Date): Promise<HistoryResult>;
  membership(conversationId: string, userId: string): Promise<Membership>;
  /** The conversation's members, or null when there is no such conversation. */
  members(conversationId: string): Promise<string[] | null>;
  listConversations(userId: string, now: Date): Promise<ConversationSummary[]>;
  createGroup(req: NewGroup): Promise<ConversationSummary>;
  /** Deletes up to `limit` expired messages (and their delivery rows); returns how many. */
  deleteExpired(now: Date, limit: number): Promise<number>;
  setLastSeen(userId: string, at: Date): Promise<void>;
  lastSeen(userIds: string[]): Promise<Map<string, Date>>;
  ping(): Promise<void>;
}

/** Reaching users' connected devices, wherever they are. Best effort: nothing here is durable. */
export interface Notifier {
  /**
   * Offers a live message to every live (already synced) device of the recipient, on every
   * node or (`local`) on this node only; resolves true once at least one device confirmed
   * it, false if none did in time.
   */
  deliver(recipient: string, message: Message, scope?: "cluster" | "local"): Promise<boolean>;
  status(sender: string, update: StatusUpdate): void;
  conversationCreated(userId: string, conversation: ConversationSummary): void;
  typing(userIds: string[], event: TypingEvent): void;
}

/** Why a message is offered again: the periodic round, or another node's death. */
export type RedeliveryReason = "periodic" | "node_death";

/**
 * What became of messages a redelivery round looked at: `offered` again, `skipped` (an offer
 * from this node was still waiting for its receipt: a duplicate avoided), `redundant` (the
 * device confirmed a row that was already delivered: a duplicate it received).
 */
export type RedeliveryOutcome = "offered" | "skipped" | "redundant";

/** Counters the core reports; the app feeds them to Prometheus. */
export interface MessagingMetrics {
  stored(count: number): void;
  delivered(count: number): void;
  read(count: number): void;
  redelivery(reason: RedeliveryReason, outcome: RedeliveryOutcome, count: number): void;
}

export const noMetrics: MessagingMetrics = { stored() {}, delivered() {}, read() {}, redelivery() {} };
