/**
 * What the messaging core needs from the outside world, as small interfaces: storage
 * (storage/SqlMessageStore), a way to reach users' devices (transport/SocketNotifier), who
 * is online and who runs background jobs (cluster/: in memory for one node, Redis for many).
 * The implementations import these contracts, never the other way round.
 */
import {
  AppError,
  type ConversationSummary,
  type HistoryResult,
  type MediaAttachment,
  type MediaInfo,
  type Message,
  type StatusUpdate,
  type TypingEvent,
} from "../protocol";
import type { EntryKind } from "./entryRules";
import type { Visibility } from "./groupPorts";

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
  /** The media it carries (MediaService.attach checked it), or null. */
  media: MediaInfo | null;
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

/**
 * Turns what a sender says about media (`message:send`'s `media`) into what the message
 * carries, or refuses it (BAD_REQUEST): media/MediaService implements it.
 */
export interface MediaAttacher {
  attach(userId: string, attachment: MediaAttachment): Promise<MediaInfo>;
}

/** Without a media store nothing can be attached. */
export const noMedia: MediaAttacher = {
  attach: async () => {
    throw new AppError("BAD_REQUEST", "media is not available on this server");
  },
};

export type AppendResult =
  | { duplicate: false; message: Message; recipients: string[] }
  | { duplicate: true; message: Message };

/**
 * A message whose status just moved, with its sender (who is told), and the positions the
 * change took in the status streams: `pos` in the sender's, `ownPos` (reads only) in the
 * reader's own (statusPorts.ts).
 */
export type StatusChange = { messageId: string; from: string; pos: string; ownPos?: string };

/** `fromSeq`/`untilSeq`: the caller's window (Visibility), both included. */
export type HistoryQuery = { beforeSeq?: number; afterSeq?: number; limit: number; fromSeq?: number; untilSeq?: number };

export type NewGroup = {
  id: string;
  title: string;
  creator: string;
  members: string[];
  at: Date;
  /** GROUP_CREATE_PER_HOUR: refused (RATE_LIMITED) when the creator made this many in the last hour. Unset: no cap. */
  createdPerHour?: number;
};

/** Durable storage. Every method throws StorageUnavailableError when the database fails. */
export interface MessageStore {
  ensureUser(userId: string): Promise<void>;
  /**
   * Stores the message, its seq and one delivery row per recipient in one commit; resolves
   * only after COMMIT. A (from, clientMsgId) already stored answers the original.
   * Concurrent calls may share a commit (group commit).
   *
   * Storage also decides what a send may do, inside that same statement (one round trip,
   * where checking first would cost another), by the rules of ./routing:
   * - `{ to }`: creates the direct conversation (directKey), its members and their directory
   *   entries on first use;
   * - `{ conversationId }`: rejects with AppError NOT_FOUND (no such conversation) or
   *   FORBIDDEN (the sender is not a member), storing nothing (routeToConversation).
   * Those refusals are per request: the other requests of a shared commit are unaffected.
   *
   * Entries (edit, delete, reaction) are judged in the same statement by ./entryRules
   * (judgeEntry), against their target as committed and as earlier requests of the batch
   * left it; they change the target's state in that commit (a delete also erases the content
   * of the target's entries). Refusals reject with the verdict's AppError and store nothing.
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
  /** Which seqs of the conversation the user may see: members from their entry on, former members up to it. */
  visibility(conversationId: string, userId: string): Promise<Visibility>;
  /** Whether any of these messages lies in a conversation the user left or was removed from. */
  departedFrom(userId: string, messageIds: string[]): Promise<boolean>;
  /** The conversation's members, or null when there is no such conversation. */
  members(conversationId: string): Promise<string[] | null>;
  listConversations(userId: string, now: Date, query?: SummaryQuery): Promise<ConversationPage>;
  createGroup(req: NewGroup): Promise<ConversationSummary>;
  /**
   * Partition upkeep (storage/partitions.ts): creates the partitions of today and the days
   * ahead, drops past ones none of whose rows is still live. One node at a time.
   */
  maintainPartitions(now: Date): Promise<PartitionReport>;
  /**
   * Deletes up to `limit` of each kind of expired row no partition drop takes: messages the
   * DEFAULT partition caught (with their delivery rows and pushes), and idempotency keys.
   */
  deleteExpired(now: Date, limit: number): Promise<{ messages: number; keys: number }>;
  setLastSeen(userId: string, at: Date): Promise<void>;
  lastSeen(userIds: string[]): Promise<Map<string, Date>>;
  ping(): Promise<void>;
}

/** What one round of partition upkeep did. */
export type PartitionReport = {
  created: string[];
  dropped: { name: string; messages: number }[];
  /** Partitions that went (or a twin that lost its other half) without the sweep: an operator's hand. */
  handDropped: string[];
  /** Messages the DEFAULT partition had caught and a new partition took over. */
  movedFromDefault: number;
};

/** Reaching users' connected devices, wherever they are. Best effort: nothing here is durable. */
export interface Notifier {
  /**
   * Offers a live message to every live (already synced) device of the recipient on this
   * node; resolves true once at least one device confirmed it, false if none did in time.
   */
  deliverLocal(recipient: string, message: Message): Promise<boolean>;
  /**
   * Asks every other node, in one inter-node message, to offer a just-stored message to its
   * own live devices of these recipients (each node stores the receipts it gets:
   * MessagingService.offerHere) and of the sender (`own`). Any message, direct or group,
   * costs one message between nodes, whatever its recipients. One node: nothing to do.
   */
  fanOut(recipients: string[], message: Message, own?: OwnCopy): void;
  /** Those of `userIds` with a live (synced) device on this node. */
  localRecipients(userIds: string[]): string[];
  /**
   * Offers a message the user just sent to their other live devices on this node; never to
   * `origin` (the sending connection). Their receipts are not delivery receipts: nothing
   * waits for them.
   */
  ownCopyHere(sender: string, message: Message, origin?: string): void;
  /** To every device of `userId`, but `except` (a connection). */
  status(userId: string, update: StatusUpdate, except?: string): void;
  /** To every device of these users at once (one broadcast, whatever their number). */
  conversationCreated(userIds: string[], conversation: ConversationSummary): void;
  typing(userIds: string[], event: TypingEvent): void;
}

/** Who sent a message, and from which connection: their other devices get a copy. */
export type OwnCopy = { from: string; origin?: string };

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

/**
 * Who is online, counted per connection across every node. A user is online while any of
 * their sockets, on any node, is connected.
 */
export interface PresenceTracker {
  /** Records a connection; true when it made the user go from offline to online. */
  connected(userId: string, connectionId: string): Promise<boolean>;
  /** Forgets a connection; true when it was the user's last one. */
  disconnected(userId: string, connectionId: string): Promise<boolean>;
  online(userIds: string[]): Promise<Set<string>>;
  /**
   * The heartbeat (every PRESENCE_TTL_MS / 6): keeps this node's connections alive for the
   * other nodes. Returns users who had wrongly been reaped (a stalled node) and are online again.
   */
  refresh(): Promise<string[]>;
  /** Forgets connections whose node stopped refreshing them; returns users now offline. */
  reap(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Runs background work (the expiry sweep) on one node at a time across the cluster.
 */
export interface LeaderLock {
  /**
   * Runs `work` if this node holds (or can take) the lock; returns false, without running
   * it, when another node holds it or a run of that job is still in progress on this node.
   * test/contracts/leaderLock.test.ts states what both implementations promise.
   */
  runExclusive(name: string, work: () => Promise<void>): Promise<boolean>;
  /** Gives up what this node holds (at shutdown). */
  release(): Promise<void>;
}

/** Which of the caller's conversations a `conversation:list` asks for. */
export type SummaryQuery = {
  /** Just these conversations (the caller's, current or former). */
  ids?: string[];
  /** Just the direct conversation with this user. */
  withUser?: string;
  /** At most this many, after `before` (a position from an earlier page). */
  limit?: number;
  before?: ListPosition;
};

/** Where a conversation stands in the list: its activity time (µs since the epoch, exact) and id. */
export type ListPosition = { activeUs: string; id: string };

/** One page of the caller's conversation list; `next` is set when more follow. */
export type ConversationPage = { conversations: ConversationSummary[]; next: ListPosition | null };
