/**
 * What the messaging core needs from the outside world, as small interfaces: storage
 * (storage/SqlMessageStore) and a way to reach users' devices (transport/SocketNotifier).
 */
import type { ConversationSummary, HistoryResult, Message, StatusUpdate, TypingEvent } from "../protocol";
import type { EntryKind } from "./entryRules";

export type SendTarget = { to: string } | { conversationId: string };

/** A text message: `message:send`. */
export type TextAppend = {
  kind: "text";
  id: string;
  from: string;
  clientMsgId: string;
  target: SendTarget;
  content: string;
  createdAt: Date;
  expiresAt: Date;
};

/**
 * An edit, delete or reaction of the text message `refId`. Its conversation, recipients and
 * expiresAt are the target's; the store judges it with `judgeEntry` (entryRules.ts).
 */
export type EntryAppend = {
  kind: EntryKind;
  id: string;
  from: string;
  clientMsgId: string;
  refId: string;
  /** Edit: the new text. Reaction: the emoji, "" to remove. Delete: "". */
  content: string;
  createdAt: Date;
  /** Edit and delete: how long after the target's createdAt they are allowed. */
  windowMs: number | null;
};

export type AppendRequest = TextAppend | EntryAppend;

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
   * Concurrent calls may share a commit (group commit). An entry is judged (judgeEntry)
   * against its target as committed, and changes the target's state in the same commit
   * (a delete also erases the content of the target's entries); refusals reject with the
   * verdict's AppError and store nothing.
   */
  append(req: AppendRequest): Promise<AppendResult>;
  markDelivered(recipient: string, messageIds: string[], at: Date): Promise<StatusChange[]>;
  markRead(reader: string, messageIds: string[], at: Date): Promise<StatusChange[]>;
  /** Undelivered, unexpired messages for any of `recipients`, created before `createdBefore`. */
  undelivered(
    recipients: string[],
    createdBefore: Date,
    now: Date,
    limit: number,
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

/** Counters the core reports; the app feeds them to Prometheus. */
export interface MessagingMetrics {
  stored(count: number): void;
  delivered(count: number): void;
  read(count: number): void;
}

export const noMetrics: MessagingMetrics = { stored() {}, delivered() {}, read() {} };
