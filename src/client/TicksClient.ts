/**
 * The Ticks client SDK: one object per signed-in device. It owns the socket and everything a
 * chat UI needs from the protocol:
 * - an outbox (send() answers a local message at once and keeps trying, same clientMsgId,
 *   until the server stores it or refuses it for good), in a storage the app picks;
 * - gap-free conversations (live, backlog, own sends and history merged in seq order, gaps
 *   filled from history) and v2 edits/deletes/reactions applied to their message;
 * - per-message status events (pending → sent → delivered → read, or failed);
 * - receipts, unread counts, typing (throttled), presence;
 * - reconnection with backoff and a fresh token from getToken() at every connect, token
 *   refresh on `auth:expiring`.
 * It always listens for `message:backlog`: without that listener the server never finishes
 * a sync and sends no live messages.
 */
import { io, type ManagerOptions, type SocketOptions } from "socket.io-client";
import type {
  AuthRefreshRequest,
  AuthRefreshResult,
  ConversationSummary,
  HistoryResult,
  Presence,
  Reply,
  StatusUpdate,
} from "../protocol/events";
import { backoffDelay } from "./backoff";
import { Conversations } from "./Conversations";
import { ConversationSync, type MessageSource, type SyncOptions } from "./ConversationSync";
import { Emitter } from "./Emitter";
import type { ChatMessage } from "./entries";
import { checkContent, DEFAULT_MAX_CONTENT_LENGTH, maxPacketBytes } from "./limits";
import { Outbox, type OutboxOptions } from "./Outbox";
import { MemoryOutboxStorage, type OutboxStorage, type PendingAction, type PendingEntry } from "./OutboxStorage";
import { call, emitRaw, type ClientSocket, type OkOf, type ReplyOf, type RequestOf, request } from "./request";
import { StatusTracker, type StatusChange } from "./StatusTracker";
import { subjectOf } from "./token";
import { TypingThrottle, type TypingOptions } from "./Typing";
import { v4 as uuidv4 } from "uuid";
import type { ClientEventName } from "../protocol/events";

export type { ClientSocket, ReplyOf, RequestOf } from "./request";
export type { MessageSource } from "./ConversationSync";

export type TicksClientOptions = {
  /** Server URL. In a page served by the server: `location.origin`. */
  url: string;
  /** Dev-mode servers only (AUTH_MODE=dev): the user id, taken on trust. */
  userId?: string;
  /** A JWT. Prefer getToken for tokens that expire. */
  token?: string;
  /** Called at every connect and when the server warns the token is expiring. */
  getToken?: () => string | Promise<string>;
  /** Names this device (1–64 chars [A-Za-z0-9._-]). */
  deviceId?: string;
  /** Where pending sends wait. @default MemoryOutboxStorage (IndexedDbOutboxStorage in a browser app) */
  storage?: OutboxStorage;
  /** Clustered servers accept WebSocket only. @default ["websocket"] */
  transports?: ("websocket" | "polling")[];
  /** How long a request waits for its acknowledgement. @default 10000 */
  ackTimeoutMs?: number;
  /** The server's MAX_CONTENT_LENGTH, for refusing over-long content locally. @default 4096 */
  maxContentLength?: number;
  /**
   * Largest packet that reaches the server: content whose encoding would not fit is refused
   * locally. Set it when a proxy in between has a smaller frame limit than the server.
   * @default the server's limit for maxContentLength (protocol/packets.ts)
   */
  maxPacketBytes?: number;
  /** Reconnect backoff. @default 500 to 30000 */
  reconnectDelayMs?: number;
  reconnectDelayMaxMs?: number;
  outbox?: OutboxOptions;
  sync?: SyncOptions;
  typing?: TypingOptions;
  /** Anything else for socket.io-client (path, extraHeaders…). */
  socket?: Partial<ManagerOptions & SocketOptions>;
};

/** What the app renders for a message it sent, before and after the server stores it. */
export type LocalMessage = PendingEntry & { from: string | undefined; status: "pending" };

export type TicksClientEvents = {
  connected(): void;
  disconnected(reason: string): void;
  /** A connection attempt failed; `refused` when the server turned the handshake down. */
  connect_error(error: Error & { data?: unknown }, refused: boolean): void;
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
  /** A token was refreshed on the live connection. */
  token(info: { expiresAt: string | null }): void;
  /** Background work failed (catching up, a token refresh); the client keeps going. */
  error(error: Error): void;
};

const READ_CHUNK = 500;
const CATCH_UP_PARALLEL = 4;
/** Consecutive refused handshakes (with fresh tokens) before the client gives up. */
const MAX_REFUSALS = 4;

export class TicksClient extends Emitter<TicksClientEvents> {
  readonly socket: ClientSocket;
  private readonly options: TicksClientOptions;
  private readonly outbox: Outbox;
  private readonly sync: ConversationSync;
  private readonly statuses: StatusTracker;
  private readonly conversationList: Conversations;
  private readonly typingThrottle: TypingThrottle;
  private readonly presenceSubscribed = new Set<string>();
  private user: string | undefined;
  private everConnected = false;
  private refusals = 0;
  private closed = false;
  private restoring: Promise<unknown> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private isSynced = false;

  constructor(options: TicksClientOptions) {
    super();
    this.options = options;
    this.user = options.userId ?? (options.token ? subjectOf(options.token) : undefined);
    this.socket = io(options.url, {
      autoConnect: false,
      transports: options.transports ?? ["websocket"],
      reconnectionDelay: options.reconnectDelayMs ?? 500,
      reconnectionDelayMax: options.reconnectDelayMaxMs ?? 30_000,
      // A function: called at every (re)connect, so each handshake carries a fresh token.
      auth: (cb) => {
        void this.handshakeAuth().then(cb, (err: Error) => {
          this.emit("error", err);
          cb({});
        });
      },
      ...options.socket,
    }) as ClientSocket;
    this.statuses = new StatusTracker((change) => this.emit("status", change));
    this.conversationList = new Conversations(
      () => this.user,
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
        whenConnected: () => this.whenConnected(),
        emit: (event, payload) => emitRaw(this.socket as never, event, payload, this.ackTimeoutMs),
      },
      options.storage ?? new MemoryOutboxStorage(),
      {
        done: (entry, message) => {
          this.statuses.sent(message.id, message.conversationId, entry.clientMsgId);
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
    return this.user;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** True between a `synced` event and the next disconnect. */
  get synced(): boolean {
    return this.isSynced;
  }

  private get ackTimeoutMs(): number {
    return this.options.ackTimeoutMs ?? 10_000;
  }

  /**
   * Connects, and restores the outbox's stored entries (they go out once connected).
   * Resolves at the first connection; rejects if the server refuses the handshake (e.g.
   * "unauthorized", "origin not allowed"). A server that cannot be reached is retried with
   * backoff meanwhile (each failure is a `connect_error` event).
   */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("this client was closed: create a new TicksClient"));
    this.restoring ??= this.outbox.restore().then((entries) => {
      for (const e of entries) this.statuses.pending(e.clientMsgId, conversationOf(e));
    });
    return new Promise((resolve, reject) => {
      const offConnected = this.once("connected", () => {
        offError();
        resolve();
      });
      const offError = this.on("connect_error", (err, refused) => {
        if (!refused || this.everConnected) return;
        offConnected();
        offError();
        reject(err);
      });
      this.socket.connect();
    });
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
    return this.outbox.pending.map((e) => ({ ...e, from: this.user, status: "pending" as const }));
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
    return request(this.socket, event, payload, this.ackTimeoutMs);
  }

  /** A typed request that rejects with ServerError on `{ ok: false }`. */
  call<E extends ClientEventName>(event: E, payload: RequestOf<E>): Promise<OkOf<E>> {
    return call(this.socket, event, payload, this.ackTimeoutMs);
  }

  /** Disconnects for good; pending sends stay in storage for the next session. */
  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.outbox.close();
    this.typingThrottle.close();
    this.socket.disconnect();
  }

  private check(content: string): void {
    const max = this.options.maxContentLength ?? DEFAULT_MAX_CONTENT_LENGTH;
    checkContent(content, max, this.options.maxPacketBytes ?? maxPacketBytes(max));
  }

  private queue(action: PendingAction): LocalMessage {
    if (this.closed) throw new Error("the client is closed");
    const entry = this.outbox.add(action, uuidv4(), new Date());
    this.statuses.pending(entry.clientMsgId, conversationOf(entry));
    return { ...entry, from: this.user, status: "pending" };
  }

  private async handshakeAuth(): Promise<Record<string, string>> {
    const auth: Record<string, string> = {};
    if (this.options.deviceId) auth.deviceId = this.options.deviceId;
    if (this.options.userId) auth.userId = this.options.userId;
    const token = this.options.getToken ? await this.options.getToken() : this.options.token;
    if (token) {
      auth.token = token;
      this.user = subjectOf(token) ?? this.user;
    }
    return auth;
  }

  private whenConnected(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("closed"));
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("connect", () => resolve()));
  }

  private delivered(m: ChatMessage, source: MessageSource): void {
    // Mine, sent from another device: it is at least stored.
    if (m.from === this.user && source !== "sent" && source !== "history") this.statuses.sent(m.id, m.conversationId);
    this.conversationList.message(m, source === "live" || source === "backlog");
    this.emit("message", m, source);
  }

  private listen(): void {
    const s = this.socket;
    s.on("connect", () => {
      this.everConnected = true;
      this.refusals = 0;
      this.emit("connected");
      this.outbox.wake();
      if (this.presenceSubscribed.size > 0) {
        void this.call("presence:subscribe", { userIds: [...this.presenceSubscribed].slice(0, 500) }).then(
          (r) => r.presence.forEach((p) => this.emit("presence", p)),
          () => undefined,
        );
      }
    });
    s.on("disconnect", (reason) => {
      this.isSynced = false;
      this.emit("disconnected", reason);
      // The server ended this connection (token expired, shutdown): socket.io-client will not
      // come back by itself, so the SDK does, with a fresh token.
      if (reason === "io server disconnect" && !this.closed) this.reconnectLater();
    });
    s.on("connect_error", (err: Error & { data?: unknown }) => {
      const refused = err.data !== undefined || !s.active;
      this.emit("connect_error", err, refused);
      if (!refused || this.closed || !this.everConnected) return;
      // A refusal after having been connected (a token that expired meanwhile): retry with a fresh one.
      if (++this.refusals <= MAX_REFUSALS && this.options.getToken) this.reconnectLater();
    });
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
      if (update.by === this.user) {
        // Read on another device of this user.
        if (update.status === "read") this.conversationList.read(update.messageIds);
        return;
      }
      for (const id of update.messageIds) this.statuses.receipt(id, update.status, update.by);
    });
    s.on("conversation:new", (summary) => this.conversationList.upsert(summary));
    s.on("typing", (e) => {
      if (e.userId !== this.user) this.typingThrottle.received(e.conversationId, e.userId, e.typing);
    });
    s.on("presence", (p) => this.emit("presence", p));
    s.on("auth:expiring", () => void this.refreshToken());
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

  private async refreshToken(): Promise<void> {
    if (!this.options.getToken) return;
    try {
      const token = await this.options.getToken();
      // Untyped until the server's handler is part of ClientToServerEvents.
      const request: AuthRefreshRequest = { token };
      const reply = (await emitRaw(this.socket as never, "auth:refresh", request, this.ackTimeoutMs)) as Reply<AuthRefreshResult>;
      if (!reply.ok) throw new Error(`token refresh refused: ${reply.error.code} ${reply.error.message}`);
      this.user = subjectOf(token) ?? this.user;
      this.emit("token", { expiresAt: reply.expiresAt });
    } catch (err) {
      // The server disconnects at expiry; the reconnect then asks getToken() again.
      this.emit("error", err as Error);
    }
  }

  private reconnectLater(): void {
    clearTimeout(this.reconnectTimer);
    const delay = backoffDelay(this.refusals, this.options.reconnectDelayMs ?? 500, this.options.reconnectDelayMaxMs ?? 30_000);
    this.reconnectTimer = setTimeout(() => {
      if (!this.closed && !this.socket.connected) this.socket.connect();
    }, delay);
  }
}

const conversationOf = (entry: PendingEntry): string | undefined =>
  entry.event === "message:send" ? entry.conversationId : undefined;
