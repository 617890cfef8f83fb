/**
 * The Ticks client SDK: one object per signed-in device. It owns the socket and everything a
 * chat UI needs from the protocol:
 * - an outbox (send() answers a local message at once and keeps trying, same clientMsgId,
 *   until the server stores it or refuses it for good), in a storage the app picks;
 * - gap-free conversations (live, backlog, own sends and history merged in seq order, gaps
 *   filled from history) and v2 edits/deletes/reactions applied to their message;
 * - per-message status events (pending → sent → delivered → read, or failed);
 * - receipts, unread counts, typing (throttled), presence;
 * - the connection (Connection.ts): reconnection with backoff, a fresh token from getToken()
 *   at every connect, token refresh on `auth:expiring`.
 * It always listens for `message:backlog`: without that listener the server never finishes
 * a sync and sends no live messages.
 */
import { v4 as uuidv4 } from "uuid";
import type { ClientEventName, ConversationSummary, HistoryResult, Presence, StatusUpdate } from "../protocol/events";
import { Connection, type ConnectionEvents, type ConnectionOptions } from "./Connection";
import { Conversations } from "./Conversations";
import { ConversationSync, type MessageSource, type SyncOptions } from "./ConversationSync";
import { Emitter } from "./Emitter";
import type { ChatMessage } from "./entries";
import { checkContent, DEFAULT_MAX_CONTENT_LENGTH, maxPacketBytes } from "./limits";
import { Outbox, type OutboxOptions } from "./Outbox";
import { MemoryOutboxStorage, type OutboxStorage, type PendingAction, type PendingEntry } from "./OutboxStorage";
import { call, emitRaw, type ClientSocket, type OkOf, type ReplyOf, type RequestOf, request } from "./request";
import { StatusTracker, type StatusChange } from "./StatusTracker";
import { TypingThrottle, type TypingOptions } from "./Typing";

export type { ClientSocket, ReplyOf, RequestOf } from "./request";
export type { MessageSource } from "./ConversationSync";

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
  sync?: SyncOptions;
  typing?: TypingOptions;
};

/** What the app renders for a message it sent, before and after the server stores it. */
export type LocalMessage = PendingEntry & { from: string | undefined; status: "pending" };

export type TicksClientEvents = ConnectionEvents & {
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

const READ_CHUNK = 500;
const CATCH_UP_PARALLEL = 4;

export class TicksClient extends Emitter<TicksClientEvents> {
  readonly socket: ClientSocket;
  private readonly options: TicksClientOptions;
  private readonly outbox: Outbox;
  private readonly sync: ConversationSync;
  private readonly statuses: StatusTracker;
  private readonly conversationList: Conversations;
  private readonly typingThrottle: TypingThrottle;
  private readonly connection: Connection;
  private readonly presenceSubscribed = new Set<string>();
  private restoring: Promise<unknown> | undefined;
  private isSynced = false;

  constructor(options: TicksClientOptions) {
    super();
    this.options = options;
    this.connection = new Connection(options);
    this.socket = this.connection.socket;
    this.statuses = new StatusTracker((change) => this.emit("status", change));
    this.conversationList = new Conversations(
      () => this.me,
      (summary) => this.emit("conversation", summary),
    );
    this.sync = new ConversationSync(
      {
        history: (req) => this.call("message:history", req) as Promise<HistoryResult>,
        deliver: (m, source) => this.delivered(m, source),
        updated: (m) => this.emit("updated", m),
      },
      options.sync,
    );
    this.outbox = new Outbox(
      {
        whenConnected: () => this.connection.whenConnected(),
        emit: (event, payload) => emitRaw(this.socket as never, event, payload, this.ackTimeoutMs),
      },
      options.storage ?? new MemoryOutboxStorage(),
      {
        done: (entry, message) => {
          this.statuses.sent(message.id, message.conversationId, entry.clientMsgId, message);
          void this.sync.receive(message, "sent").catch((err: Error) => this.emit("error", err));
        },
        failed: (entry, error) => this.statuses.failed(entry.clientMsgId, error, conversationOf(entry)),
        retrying: () => undefined,
      },
      options.outbox,
    );
    this.typingThrottle = new TypingThrottle(
      (conversationId, typing) => void this.request("typing", { conversationId, typing }).catch(() => undefined),
      (conversationId, userId, typing) => this.emit("typing", { conversationId, userId, typing }),
      options.typing,
    );
    this.listen();
  }

  /** The signed-in user (from userId, or the token's `sub`). */
  get me(): string | undefined {
    return this.connection.me;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** True between a `synced` event and the next disconnect. */
  get synced(): boolean {
    return this.isSynced;
  }

  private get ackTimeoutMs(): number {
    return this.connection.ackTimeoutMs;
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
    }
    return this.connection.connect();
  }

  /** Resolves at the next `synced`. */
  whenSynced(): Promise<{ delivered: number }> {
    return new Promise((resolve) => this.once("synced", resolve));
  }

  /**
   * Sends `content` to a user (`{ to }`) or a conversation (`{ conversationId }`). Returns the
   * local message at once; its `status` events follow. Throws ContentTooLargeError when the
   * server could not accept it, so nothing is queued.
   */
  send(target: { to: string } | { conversationId: string }, content: string): LocalMessage {
    this.check(content);
    return this.queue({ event: "message:send", ...target, content });
  }

  /** v2: replaces the content of one's own text message. */
  edit(messageId: string, content: string): LocalMessage {
    this.check(content);
    return this.queue({ event: "message:edit", messageId, content });
  }

  /** v2: deletes one's own text message for everyone. */
  delete(messageId: string): LocalMessage {
    return this.queue({ event: "message:delete", messageId });
  }

  /** v2: reacts to a message ("" removes one's reaction). */
  react(messageId: string, emoji: string): LocalMessage {
    return this.queue({ event: "message:react", messageId, emoji });
  }

  /** What the outbox still has to send, oldest first. */
  pending(): LocalMessage[] {
    return this.outbox.pending.map((e) => ({ ...e, from: this.me, status: "pending" as const }));
  }

  /** Marks every unread message from others in the conversation read (the read receipts). */
  async markRead(conversationId: string): Promise<number> {
    const ids = this.conversationList.unread(conversationId);
    let updated = 0;
    for (let i = 0; i < ids.length; i += READ_CHUNK) {
      const chunk = ids.slice(i, i + READ_CHUNK);
      updated += (await this.call("message:read", { messageIds: chunk })).updated;
      this.conversationList.read(chunk);
    }
    this.conversationList.allRead(conversationId);
    return updated;
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

  /** Text messages held for a conversation, by seq, in their current state. */
  messages(conversationId: string): ChatMessage[] {
    return this.sync.messages(conversationId);
  }

  conversations(): ConversationSummary[] {
    return this.conversationList.list();
  }

  directWith(userId: string): ConversationSummary | undefined {
    return this.conversationList.directWith(userId);
  }

  /** A status this device has seen for a message it (or another device of the user) sent. */
  statusOf(messageId: string) {
    return this.statuses.get(messageId);
  }

  /** What the de-duplication and caches hold: bounded, whatever the traffic. */
  memory() {
    return { ...this.sync.memory(), statuses: this.statuses.size };
  }

  async createGroup(title: string, members: string[]): Promise<string> {
    return (await this.call("group:create", { title, members })).conversationId;
  }

  /** A typed request: resolves the reply, `ok` or not; rejects with RequestTimeout without an ack. */
  request<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<ReplyOf<E>> {
    if (this.connection.isClosed) return Promise.reject(closedError());
    return request(this.socket, event, payload, this.ackTimeoutMs);
  }

  /** A typed request that rejects with ServerError on `{ ok: false }`. */
  call<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<OkOf<E>> {
    // After close() a request would sit in socket.io-client's send buffer with a live ack
    // timer that holds the whole client for ackTimeoutMs, and the sync work queued behind it
    // (one conversation's lock) re-arms that for every step: a closed client stayed reachable
    // as long as its sync kept asking. Refusing at once lets it go.
    if (this.connection.isClosed) return Promise.reject(closedError());
    return call(this.socket, event, payload, this.ackTimeoutMs);
  }

  /** Disconnects for good; pending sends stay in storage for the next session. */
  close(): void {
    this.outbox.close();
    this.typingThrottle.close();
    this.connection.close();
  }

  private check(content: string): void {
    const max = this.options.maxContentLength ?? DEFAULT_MAX_CONTENT_LENGTH;
    checkContent(content, max, this.options.maxPacketBytes ?? maxPacketBytes(max));
  }

  private queue(action: PendingAction): LocalMessage {
    if (this.connection.isClosed) throw new Error("the client is closed");
    const entry = this.outbox.add(action, uuidv4(), new Date());
    this.statuses.pending(entry.clientMsgId, conversationOf(entry));
    return { ...entry, from: this.me, status: "pending" };
  }

  private delivered(m: ChatMessage, source: MessageSource): void {
    // Mine, sent from another device: it is at least stored.
    if (m.from === this.me && source !== "sent" && source !== "history") this.statuses.sent(m.id, m.conversationId);
    this.conversationList.message(m, source === "live" || source === "backlog");
    this.emit("message", m, source);
  }

  private listen(): void {
    const c = this.connection;
    c.on("connected", () => {
      this.emit("connected");
      this.outbox.wake();
      if (this.presenceSubscribed.size > 0) {
        void this.call("presence:subscribe", { userIds: [...this.presenceSubscribed].slice(0, 500) }).then(
          (r) => r.presence.forEach((p) => this.emit("presence", p)),
          () => undefined,
        );
      }
    });
    c.on("disconnected", (reason) => {
      this.isSynced = false;
      this.emit("disconnected", reason);
    });
    c.on("connect_error", (err, refused) => this.emit("connect_error", err, refused));
    c.on("token", (info) => this.emit("token", info));
    c.on("expiring", (info) => this.emit("expiring", info));
    c.on("expired", () => this.emit("expired"));
    c.on("error", (err) => this.emit("error", err));
    const s = this.socket;
    // Always listened for: the server sends nothing live until the backlog is acknowledged.
    s.on("message:backlog", (page, ack) => {
      void (async () => {
        for (const m of page.messages) await this.sync.receive(m, "backlog");
        ack();
      })().catch((err: Error) => this.emit("error", err));
    });
    s.on("message:new", (m, ack) => {
      this.sync.receive(m, "live").then(
        () => ack(),
        (err: Error) => this.emit("error", err),
      );
    });
    s.on("sync:complete", ({ delivered }) => {
      void this.catchUp().then(
        () => {
          this.isSynced = true;
          this.emit("synced", { delivered });
        },
        (err: Error) => this.emit("error", err),
      );
    });
    s.on("message:status", (update: StatusUpdate) => {
      if (update.by === this.me) {
        // Read on another device of this user.
        if (update.status === "read") this.conversationList.read(update.messageIds);
        return;
      }
      for (const id of update.messageIds) this.statuses.receipt(id, update.status, update.by);
    });
    s.on("conversation:new", (summary) => this.conversationList.upsert(summary));
    s.on("typing", (e) => {
      if (e.userId !== this.me) this.typingThrottle.received(e.conversationId, e.userId, e.typing);
    });
    s.on("presence", (p) => this.emit("presence", p));
  }

  /** Every conversation to the server's lastSeq: what other devices took while this one was away. */
  private async catchUp(): Promise<void> {
    const { conversations } = await this.call("conversation:list", {});
    this.conversationList.replaceAll(conversations);
    const queue = [...conversations];
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        await this.sync.catchUp(c.id, c.lastSeq);
        this.conversationList.adoptUnread(c.id, this.sync.messages(c.id));
      }
    };
    await Promise.all(Array.from({ length: CATCH_UP_PARALLEL }, worker));
  }
}

const closedError = () => new Error("the client is closed");

const conversationOf = (entry: PendingEntry): string | undefined =>
  entry.event === "message:send" ? entry.conversationId : undefined;
