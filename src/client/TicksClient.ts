/**
 * The Ticks client SDK: one object per signed-in device. It owns the socket and everything a
 * chat UI needs from the protocol:
 * - an outbox (send() resolves a local message once the storage the app picks holds it, and
 *   keeps trying, same clientMsgId, until the server stores it or refuses it for good);
 * - gap-free conversations (live, backlog, own sends and history merged in seq order, gaps
 *   filled from history) and v2 edits/deletes/reactions applied to their message;
 * - per-message status events (pending → sent → delivered → read, or failed; groups by the
 *   all-recipients rule), caught up from the status stream after every sync;
 * - receipts, unread counts, typing (throttled), presence;
 * - the connection (Connection.ts): reconnection with backoff, a fresh token from getToken()
 *   at every connect, token refresh on `auth:expiring`.
 * ClientBase.ts holds the connection and typed requests, GroupClient.ts the group calls,
 * clientTypes.ts the options and events, serverEvents.ts what it does on each server event,
 * chatList.ts and clientOutbox.ts how the chat list and the outbox are wired.
 */
import { v4 as uuidv4 } from "uuid";
import type { ConversationSummary, HistoryResult, MessageInfoResult, Presence, StatusSyncRequest } from "../protocol/events";
import { closedError } from "./ClientBase";
import { GroupClient } from "./GroupClient";
import { createChatList, findDirect, readTop, type ListCall } from "./chatList";
import { DEFAULT_MAX_LISTED, type Conversations } from "./Conversations";
import { ConversationSync, type MessageSource } from "./ConversationSync";
import type { ChatMessage } from "./entries";
import { checkContent, DEFAULT_MAX_CONTENT_LENGTH, maxPacketBytes } from "./limits";
import type { Outbox } from "./Outbox";
import { conversationOf, createClientOutbox } from "./clientOutbox";
import { MemoryOutboxStorage, type PendingAction } from "./OutboxStorage";
import { markConversationRead } from "./markRead";
import { listenToServer } from "./serverEvents";
import type { MediaBytes } from "./mediaUpload";
import type { StatusTracker } from "./StatusTracker";
import { statusParts, type StatusStreamSync } from "./StatusStreamSync";
import { TypingThrottle } from "./Typing";
import { GroupChanges } from "./GroupChanges";
import type { LocalMessage, SendMediaOptions, TicksClientOptions } from "./clientTypes";

export type { ClientSocket, ReplyOf, RequestOf } from "./request";
export type { MessageSource } from "./ConversationSync";
export type { LocalMessage, SendMediaOptions, TicksClientEvents, TicksClientOptions } from "./clientTypes";

export class TicksClient extends GroupClient {
  private readonly options: TicksClientOptions;
  private readonly outbox: Outbox;
  private readonly sync: ConversationSync;
  private readonly statuses: StatusTracker;
  private readonly statusStream: StatusStreamSync;
  private readonly conversationList: Conversations;
  private readonly typingThrottle: TypingThrottle;
  protected readonly groups: GroupChanges;
  private readonly presenceSubscribed = new Set<string>();
  private readonly listConversations: ListCall = (req) => this.call("conversation:list", req);
  private restoring: Promise<unknown> | undefined;
  private isSynced = false;

  constructor(options: TicksClientOptions) {
    super(options);
    this.options = options;
    this.conversationList = createChatList(
      () => this.me,
      (summary) => {
        // A group's members just became known (or changed): receipts kept for its messages can count.
        if (summary.kind === "group") this.statuses?.recheck(summary.id);
        this.emit("conversation", summary);
      },
      this.listConversations,
      options.maxListed,
    );
    const storage = options.storage ?? new MemoryOutboxStorage();
    const sync = (req: StatusSyncRequest) => this.call("status:sync", req);
    const parts = statusParts(() => this.me, this.conversationList, (change) => this.emit("status", change), sync, storage, options.statusSyncIntervalMs);
    [this.statuses, this.statusStream] = [parts.statuses, parts.stream];
    const applyStatus = parts.apply;
    this.sync = new ConversationSync(
      {
        history: (req) => this.call("message:history", req) as Promise<HistoryResult>,
        deliver: (m, source) => this.delivered(m, source),
        updated: (m) => this.emit("updated", m),
      },
      options.sync,
    );
    this.outbox = createClientOutbox(
      {
        connection: this.connection,
        socket: this.socket,
        askUpload: (req) => this.call("media:upload", req),
        baseUrl: options.url,
        progress: (info) => this.emit("progress", info),
        statuses: this.statuses,
        sync: this.sync,
        error: (err) => this.emit("error", err),
      },
      storage,
      options.outbox,
    );
    this.groups = new GroupChanges((event, payload) => this.call(event, payload), (entry) => this.sync.receive(entry, "sent"));
    this.typingThrottle = new TypingThrottle(
      (conversationId, typing) => void this.request("typing", { conversationId, typing }).catch(() => undefined),
      (conversationId, userId, typing) => this.emit("typing", { conversationId, userId, typing }),
      options.typing,
    );
    listenToServer({
      emit: (event, ...args) => this.emit(event, ...args),
      connection: this.connection,
      socket: this.socket,
      outbox: this.outbox,
      sync: this.sync,
      statusStream: this.statusStream,
      applyStatus,
      conversationList: this.conversationList,
      typingThrottle: this.typingThrottle,
      presenceSubscribed: this.presenceSubscribed,
      me: () => this.me,
      setSynced: (synced) => void (this.isSynced = synced),
      call: (event, payload) => this.call(event, payload),
    });
  }

  /** True between a `synced` event and the next disconnect. */
  get synced(): boolean {
    return this.isSynced;
  }

  /**
   * Connects, and restores the outbox's stored entries (they go out once connected).
   * Resolves at the first connection; rejects if the server refuses the handshake (e.g.
   * "unauthorized", "origin not allowed"). A server that cannot be reached is retried with
   * backoff meanwhile (each failure is a `connect_error` event).
   */
  connect(): Promise<void> {
    if (!this.connection.isClosed) {
      this.restoring ??= this.outbox.restore().then((entries) => {
        for (const e of entries) this.statuses.pending(e.clientMsgId, conversationOf(e));
      });
      void this.statusStream.restore();
    }
    return this.connection.connect();
  }

  /** Resolves at the next `synced`. */
  whenSynced(): Promise<{ delivered: number }> {
    return new Promise((resolve) => this.once("synced", resolve));
  }

  /**
   * Sends `content` to a user (`{ to }`) or a conversation (`{ conversationId }`). Resolves
   * the local message once the outbox's storage holds it (a closed tab or a crash no longer
   * loses it from then on; show it as pending then); its `status` events follow. Rejects with
   * ContentTooLargeError when the server could not accept it, with OutboxStorageError when
   * the storage refuses it: either way nothing is queued.
   */
  async send(target: { to: string } | { conversationId: string }, content: string): Promise<LocalMessage> {
    this.check(content);
    return this.queue({ event: "message:send", ...target, content });
  }

  /** v3: a photo, voice note or file; resolves as send(). The outbox uploads (`progress`), then sends: docs/media.md. */
  async sendMedia(target: { to: string } | { conversationId: string }, bytes: MediaBytes, options: SendMediaOptions): Promise<LocalMessage> {
    const { mime, name, caption = "", ...media } = options;
    if (caption !== "") this.check(caption);
    return this.queue({ event: "message:send", ...target, content: caption, media, upload: { bytes, mime, ...(name ? { name } : {}) } });
  }

  /** v3: a short-lived URL of media one can see (absolute: usable in `<img src>`). */
  async mediaUrl(mediaId: string): Promise<string> {
    return new URL((await this.call("media:url", { mediaId })).url, this.options.url).toString();
  }

  /** v2: replaces the content of one's own text message. Resolves and rejects as send(). */
  async edit(messageId: string, content: string): Promise<LocalMessage> {
    this.check(content);
    return this.queue({ event: "message:edit", messageId, content });
  }

  /** v2: deletes one's own text message for everyone. Resolves and rejects as send(). */
  delete(messageId: string): Promise<LocalMessage> {
    return this.queue({ event: "message:delete", messageId });
  }

  /** v2: reacts to a message ("" removes one's reaction). Resolves and rejects as send(). */
  react(messageId: string, emoji: string): Promise<LocalMessage> {
    return this.queue({ event: "message:react", messageId, emoji });
  }

  /** What the outbox holds in storage and still has to send, oldest first. */
  pending(): LocalMessage[] {
    return this.outbox.pending.map((e) => ({ ...e, from: this.me, status: "pending" as const }));
  }

  /** Marks every unread message from others in the conversation read (the read receipts). */
  markRead(conversationId: string): Promise<number> {
    const read = async (messageIds: string[]) => (await this.call("message:read", { messageIds })).updated;
    return markConversationRead(conversationId, this.conversationList, this.sync.messages(conversationId), read);
  }

  /** Call on every keystroke; the server hears it throttled. */
  typing(conversationId: string): void {
    this.typingThrottle.typing(conversationId);
  }

  stopTyping(conversationId: string): void {
    this.typingThrottle.stop(conversationId);
  }

  /** Presence of these users now, and `presence` events whenever it changes (kept across reconnects). */
  async subscribePresence(userIds: string[]): Promise<Presence[]> {
    for (const id of userIds) this.presenceSubscribed.add(id);
    return (await this.call("presence:subscribe", { userIds })).presence;
  }

  /** Scrolling back: the page before the oldest message held (also emitted as `message` with source "history"). */
  loadOlder(conversationId: string, limit?: number): Promise<{ messages: ChatMessage[]; hasMore: boolean }> {
    return this.sync.loadOlder(conversationId, limit);
  }

  /** Text messages (in their current state) and group entries held for a conversation, by seq. */
  messages(conversationId: string): ChatMessage[] {
    return this.sync.messages(conversationId);
  }

  /** The chat list this device holds, most recently active first: at most `maxListed` (plus what loadMoreConversations() added). */
  conversations(): ConversationSummary[] {
    return this.conversationList.list();
  }

  /** Whether the user has conversations beyond those conversations() holds. */
  get hasMoreConversations(): boolean {
    return this.conversationList.hasMore;
  }

  /** Scrolling the chat list: holds `count` more conversations (the next most recently active) and returns the list. */
  async loadMoreConversations(count = this.options.maxListed ?? DEFAULT_MAX_LISTED): Promise<ConversationSummary[]> {
    this.conversationList.allowance += count;
    for (const c of await readTop(this.conversationList, this.listConversations)) this.conversationList.adoptUnread(c.id, this.sync.messages(c.id));
    return this.conversationList.list();
  }

  /** The direct conversation with `userId` held in the list, if any. */
  directWith(userId: string): ConversationSummary | undefined {
    return this.conversationList.directWith(userId);
  }

  /** The direct conversation with `userId`, asking the server when the list does not hold it; undefined when there is none yet. */
  findDirect(userId: string): Promise<ConversationSummary | undefined> {
    return findDirect(this.conversationList, this.listConversations, userId);
  }

  /** One conversation's summary, by id (without sorting the whole list as conversations() does). */
  conversation(conversationId: string): ConversationSummary | undefined {
    return this.conversationList.get(conversationId);
  }

  /** v3: per-recipient ticks of a message this user sent (a group's: its members when it was stored). */
  async info(messageId: string): Promise<MessageInfoResult["recipients"]> {
    return (await this.call("message:info", { messageId })).recipients;
  }

  /** A status this device has seen for a message it (or another device of the user) sent. */
  statusOf(messageId: string) {
    return this.statuses.get(messageId);
  }

  /** What the de-duplication and caches hold: bounded, whatever the traffic. */
  memory() {
    return { ...this.sync.memory(), statuses: this.statuses.size, listed: this.conversationList.size };
  }

  /** Disconnects for good; pending sends stay in storage for the next session. */
  close(): void {
    this.statusStream.close();
    this.outbox.close();
    this.typingThrottle.close();
    this.connection.close();
  }

  private check(content: string): void {
    const max = this.options.maxContentLength ?? DEFAULT_MAX_CONTENT_LENGTH;
    checkContent(content, max, this.options.maxPacketBytes ?? maxPacketBytes(max));
  }

  private async queue(action: PendingAction): Promise<LocalMessage> {
    if (this.connection.isClosed) throw closedError();
    const entry = await this.outbox.add(action, uuidv4(), new Date());
    this.statuses.pending(entry.clientMsgId, conversationOf(entry));
    return { ...entry, from: this.me, status: "pending" };
  }

  private delivered(m: ChatMessage, source: MessageSource): void {
    // Mine, sent from another device: it is at least stored.
    if (m.from === this.me && m.to !== null) this.statuses.noteDirect(m.id);
    if (m.from === this.me && source !== "sent" && source !== "history") this.statuses.sent(m.id, m.conversationId);
    else if (m.from === this.me) this.statuses.learn(m.id, m.conversationId);
    this.conversationList.message(m, source === "live" || source === "backlog" || source === "sync");
    this.emit("message", m, source);
  }
}
