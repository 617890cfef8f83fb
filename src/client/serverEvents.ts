import type { StatusUpdate } from "../protocol/events";
import type { Connection } from "./Connection";
import { readTop } from "./chatList";
import type { Conversations } from "./Conversations";
import type { ConversationSync } from "./ConversationSync";
import type { Outbox } from "./Outbox";
import type { ClientSocket, OkOf, RequestOf } from "./request";
import type { StatusStreamSync } from "./StatusStreamSync";
import type { StatusTracker } from "./StatusTracker";
import type { TypingThrottle } from "./Typing";
import type { TicksClientEvents } from "./clientTypes";

const CATCH_UP_PARALLEL = 4;

/** The parts of a TicksClient that the connection's and the server's events drive. */
export type ClientParts = {
  emit<E extends keyof TicksClientEvents>(event: E, ...args: Parameters<TicksClientEvents[E]>): void;
  readonly connection: Connection;
  readonly socket: ClientSocket;
  readonly outbox: Outbox;
  readonly sync: ConversationSync;
  readonly statusStream: StatusStreamSync;
  /** A `message:status` (live, or a status:sync update). */
  applyStatus(update: StatusUpdate): void;
  readonly conversationList: Conversations;
  readonly typingThrottle: TypingThrottle;
  readonly presenceSubscribed: ReadonlySet<string>;
  me(): string | undefined;
  setSynced(synced: boolean): void;
  call<E extends "conversation:list" | "presence:subscribe">(event: E, payload: RequestOf<E>): Promise<OkOf<E>>;
};

/**
 * Wires the connection's and the server's events to the client's parts. It always listens
 * for `message:backlog`: without that listener the server never finishes a sync and sends
 * no live messages.
 */
export function listenToServer(p: ClientParts): void {
  const emit: ClientParts["emit"] = (event, ...args) => p.emit(event, ...args);
  const c = p.connection;
  c.on("connected", () => {
    emit("connected");
    p.outbox.wake();
    if (p.presenceSubscribed.size > 0) {
      void p.call("presence:subscribe", { userIds: [...p.presenceSubscribed].slice(0, 500) }).then(
        (r) => r.presence.forEach((presence) => emit("presence", presence)),
        () => undefined,
      );
    }
  });
  c.on("disconnected", (reason) => {
    p.setSynced(false);
    p.statusStream.stop();
    emit("disconnected", reason);
  });
  c.on("connect_error", (err, refused) => emit("connect_error", err, refused));
  c.on("token", (info) => emit("token", info));
  c.on("expiring", (info) => emit("expiring", info));
  c.on("expired", () => emit("expired"));
  c.on("error", (err) => emit("error", err));
  const s = p.socket;
  // Always listened for: the server sends nothing live until the backlog is acknowledged.
  s.on("message:backlog", (page, ack) => {
    void (async () => {
      for (const m of page.messages) await p.sync.receive(m, "backlog");
      ack();
    })().catch((err: Error) => emit("error", err));
  });
  s.on("message:new", (m, ack) => {
    p.sync.receive(m, "live").then(
      () => ack(),
      (err: Error) => emit("error", err),
    );
  });
  s.on("sync:complete", ({ delivered }) => {
    // Messages first, then the ticks that moved while away (v3 status stream): a server
    // without the stream answers BAD_REQUEST, which leaves the live ticks as they were.
    const onError = (err: Error) => emit("error", err);
    const ticks = () => p.statusStream.catchUp().then(() => p.statusStream.start(onError), onError);
    // A catch-up that outlived its connection must not report "synced" after "disconnected".
    const socketId = s.id;
    void catchUp(p).then(ticks).then(
      () => {
        if (!s.connected || s.id !== socketId) return;
        p.setSynced(true);
        emit("synced", { delivered });
      },
      (err: Error) => emit("error", err),
    );
  });
  s.on("message:status", (update: StatusUpdate) => p.applyStatus(update));
  s.on("conversation:new", (summary) => p.conversationList.upsert(summary));
  s.on("typing", (e) => {
    if (e.userId !== p.me()) p.typingThrottle.received(e.conversationId, e.userId, e.typing);
  });
  s.on("presence", (presence) => emit("presence", presence));
}

/** Every conversation to the server's lastSeq: what other devices took while this one was away. */
async function catchUp(p: ClientParts): Promise<void> {
  // The top of the chat list, as many as the list holds; the rest catch up when they are used.
  const conversations = await readTop(p.conversationList, (req) => p.call("conversation:list", req));
  const queue = [...conversations];
  const worker = async () => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      await p.sync.catchUp(c.id, c.lastSeq);
      p.conversationList.adoptUnread(c.id, p.sync.messages(c.id));
    }
  };
  await Promise.all(Array.from({ length: CATCH_UP_PARALLEL }, worker));
}

/** Applies a `message:status` (live, or a status:sync update): a receipt, or this user's read on another device. */
export function statusApplier(
  me: () => string | undefined,
  conversations: Pick<Conversations, "read">,
  statuses: Pick<StatusTracker, "receipt">,
): (update: StatusUpdate) => void {
  return (update) => {
    if (update.by === me()) {
      if (update.status === "read") conversations.read(update.messageIds);
      return;
    }
    for (const id of update.messageIds) statuses.receipt(id, update.status, update.by);
  };
}
