import type { ConversationSummary, Presence } from "../protocol/events";
import type { ConnectionEvents, ConnectionOptions } from "./Connection";
import type { MessageSource, SyncOptions } from "./ConversationSync";
import type { ChatMessage } from "./entries";
import type { OutboxOptions } from "./Outbox";
import type { OutboxStorage, PendingEntry } from "./OutboxStorage";
import type { StatusChange } from "./StatusTracker";
import type { TypingOptions } from "./Typing";

export type TicksClientOptions = ConnectionOptions & {
  /** Where pending sends wait. @default MemoryOutboxStorage (IndexedDbOutboxStorage in a browser app) */
  storage?: OutboxStorage;
  /** The server's MAX_CONTENT_LENGTH, for refusing over-long content locally. @default 4096 */
  maxContentLength?: number;
  /**
   * Largest packet that reaches the server: content whose encoding would not fit is refused
   * locally. Set it when a proxy in between has a smaller frame limit than the server.
   * @default the server's limit for maxContentLength (protocol/packets.ts)
   */
  maxPacketBytes?: number;
  outbox?: OutboxOptions;
  /**
   * v3: while connected, the status stream is read again this often (besides after every
   * sync), for ticks whose live event was lost with a node that died. 0 turns it off.
   * @default 120000
   */
  statusSyncIntervalMs?: number;
  sync?: SyncOptions;
  typing?: TypingOptions;
  /**
   * Conversations whose summaries the chat list holds (conversations()): the most recently
   * active or used; older ones come with loadMoreConversations(), findDirect(), or a message.
   * @default 30
   */
  maxListed?: number;
};

/** What the app renders for a message it sent, before and after the server stores it. */
export type LocalMessage = PendingEntry & { from: string | undefined; status: "pending" };

/** sendMedia's description of the bytes: `mime` is required; the rest travels in the message. */
export type SendMediaOptions = {
  mime: string;
  name?: string;
  caption?: string;
  width?: number;
  height?: number;
  durationMs?: number;
  /** A `data:image/(png|jpeg|gif|webp);base64,` URL of at most 16 KiB. */
  thumbnail?: string;
};

export type TicksClientEvents = ConnectionEvents & {
  /** sendMedia: bytes of the upload of the message `clientMsgId` sent so far. */
  progress(info: { clientMsgId: string; loaded: number; total: number }): void;
  /** A message or log entry, in seq order per conversation (scrolling back excepted). */
  message(message: ChatMessage, source: MessageSource): void;
  /** A text message changed by an edit, delete or reaction. */
  updated(message: ChatMessage): void;
  status(change: StatusChange): void;
  /** Backlog drained and every conversation caught up: the device holds every message. */
  synced(info: { delivered: number }): void;
  conversation(summary: ConversationSummary): void;
  typing(event: { conversationId: string; userId: string; typing: boolean }): void;
  presence(presence: Presence): void;
};
