/**
 * The baseline: a minimal Socket.IO relay with no storage, speaking the same events and
 * acknowledgement shapes as Ticks for one direct message's whole lifecycle:
 *
 *   message:send → ack { ok: true, message, duplicate: false } → message:new to each socket
 *   of the recipient's user room, with an acknowledgement → on the first acknowledgement,
 *   message:status "delivered" to each socket of the sender's user room. (A copy of the
 *   message to the sender's other sockets, as Ticks does for multi-device.)
 *
 * Each step uses the cheapest Socket.IO mechanics that keep those events and acks: an emit
 * with an acknowledgement per socket (no room broadcast with timeout(), which counts the
 * expected replies, arms a timer and builds a broadcast operator per message), and plain
 * per-socket emits for the status. So this is the floor, not a rival implementation.
 *
 * Same transport settings as a clustered Ticks node (WebSocket only), same auth shape as
 * AUTH_MODE=dev (`auth.userId`), and prom-client's default metrics on GET /metrics, so the
 * harness reads heap, RSS and event-loop lag the same way from both. Whatever Ticks costs
 * beyond this is storage, validation and bookkeeping.
 *
 * Groups, for the 1,024-member fan-out (bench/scenarios/group.ts): `group:create` keeps the
 * members in memory, and `message:send` with a `conversationId` offers the message to every
 * other member's sockets, each with an acknowledgement, and sends the sender one
 * `message:status` per recipient on its first acknowledgement, as Ticks does.
 *
 * Run: node --expose-gc --import tsx bench/relay.ts (PORT, HOST from the environment).
 */
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import client from "prom-client";
import { Server } from "socket.io";
import { v7 as uuidv7 } from "uuid";
import type { ClientToServerEvents, Message, ServerToClientEvents } from "../src/protocol/events";

const USER_ID = /^[A-Za-z0-9._@-]{1,64}$/;
const userRoom = (userId: string) => `user:${userId}`;
const MESSAGE_TTL_MS = 30 * 24 * 60 * 60 * 1000;

type SocketData = { userId: string };

export function startRelay(port: number, host: string): Promise<number> {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const http = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz" || path === "/readyz") return void res.writeHead(200).end("ok\n");
    if (path === "/metrics") {
      void registry.metrics().then((text) => res.writeHead(200, { "content-type": registry.contentType }).end(text));
      return;
    }
    res.writeHead(404).end();
  });
  const io = new Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>(http, {
    transports: ["websocket"],
    serveClient: false,
  });

  // One conversation per unordered pair, with its seq counter: what a client sees from Ticks.
  const conversations = new Map<string, { id: string; seq: number }>();
  const conversation = (a: string, b: string) => {
    const key = a < b ? `${a} ${b}` : `${b} ${a}`;
    let c = conversations.get(key);
    if (!c) conversations.set(key, (c = { id: randomUUID(), seq: 0 }));
    return c;
  };

  const groups = new Map<string, { members: string[]; seq: number }>();

  const sockets = io.of("/").sockets;
  function* socketsOf(userId: string) {
    for (const id of io.of("/").adapter.rooms.get(userRoom(userId)) ?? []) {
      const socket = sockets.get(id);
      if (socket) yield socket;
    }
  }

  io.use((socket, next) => {
    const userId = (socket.handshake.auth as { userId?: unknown } | undefined)?.userId;
    if (typeof userId !== "string" || !USER_ID.test(userId)) {
      return next(Object.assign(new Error("unauthorized"), { data: { code: "UNAUTHORIZED" } }));
    }
    socket.data.userId = userId;
    next();
  });

  io.on("connection", (socket) => {
    const from = socket.data.userId;
    void socket.join(userRoom(from));
    // Nothing is stored, so there is never a backlog.
    socket.emit("sync:complete", { delivered: 0 });

    socket.on("group:create", (req, ack) => {
      if (typeof ack !== "function") return;
      if (!Array.isArray(req?.members)) return ack({ ok: false, error: { code: "BAD_REQUEST", message: "members" } });
      const id = randomUUID();
      groups.set(id, { members: [...new Set([from, ...req.members])], seq: 0 });
      ack({ ok: true, conversationId: id });
    });

    socket.on("message:send", (req, ack) => {
      if (typeof ack !== "function") return;
      const group = typeof req?.conversationId === "string" ? groups.get(req.conversationId) : undefined;
      if (group) return sendToGroup(from, socket.id, req.conversationId!, group, String(req.clientMsgId), String(req.content), ack);
      const to = req?.to;
      if (typeof to !== "string" || typeof req.content !== "string" || typeof req.clientMsgId !== "string") {
        return ack({ ok: false, error: { code: "BAD_REQUEST", message: "message:send needs to, clientMsgId, content" } });
      }
      const c = conversation(from, to);
      const message = textMessage({ clientMsgId: req.clientMsgId, conversationId: c.id, seq: ++c.seq, from, to, content: req.content });
      ack({ ok: true, message, duplicate: false });
      // As Ticks does: a copy to the sender's other devices (none in the bench's load).
      for (const own of socketsOf(from)) if (own !== socket) own.emit("message:new", message, () => {});
      offer(message, from, to);
    });
  });

  /** A text message with the same fields as Ticks sends, so both put the same bytes on the wire. */
  function textMessage(m: Pick<Message, "clientMsgId" | "conversationId" | "seq" | "from" | "to" | "content">): Message {
    const createdAt = new Date();
    return {
      id: uuidv7(),
      ...m,
      createdAt: createdAt.toISOString(),
      expiresAt: new Date(createdAt.getTime() + MESSAGE_TTL_MS).toISOString(),
      kind: "text",
      refId: null,
      editedAt: null,
      deletedAt: null,
      reactions: [],
      media: null,
      group: null,
    };
  }

  /** Offers `message` to each socket of `to` with an ack; the first ack sends each socket of `from` a "delivered" status. */
  function offer(message: Message, from: string, to: string) {
    let confirmed = false;
    for (const recipient of socketsOf(to)) {
      recipient.emit("message:new", message, () => {
        if (confirmed) return;
        confirmed = true;
        // No status stream in the relay: a cursor-sized placeholder keeps the packet the same size.
        const update = { messageIds: [message.id], status: "delivered" as const, by: to, at: new Date().toISOString(), cursor: "x".repeat(48) };
        for (const sender of socketsOf(from)) sender.emit("message:status", update);
      });
    }
  }

  type SendAck = Parameters<ClientToServerEvents["message:send"]>[1];
  type Group = { members: string[]; seq: number };
  /** The same lifecycle for each other member of a group: an offer with an ack each, a status each. */
  function sendToGroup(from: string, origin: string, id: string, group: Group, clientMsgId: string, content: string, ack: SendAck) {
    if (!group.members.includes(from)) return ack({ ok: false, error: { code: "FORBIDDEN", message: "not a member" } });
    const message = textMessage({ clientMsgId, conversationId: id, seq: ++group.seq, from, to: null, content });
    ack({ ok: true, message, duplicate: false });
    for (const own of socketsOf(from)) if (own.id !== origin) own.emit("message:new", message, () => {});
    for (const member of group.members) if (member !== from) offer(message, from, member);
  }

  return new Promise((resolve, reject) => {
    http.once("error", reject);
    http.listen(port, host, () => resolve((http.address() as { port: number }).port));
  });
}

if (require.main === module) {
  // The harness may ask for a full GC before reading the heap (see bench/gc-preload.cjs).
  process.on("message", (m: { bench?: string; id?: number }) => {
    if (m?.bench !== "gc") return;
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    gc?.();
    process.send?.({ bench: "gc-done", id: m.id });
  });
  process.channel?.unref();
  startRelay(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1").then(
    (port) => {
      console.log(JSON.stringify({ msg: "relay listening", port }));
      process.send?.({ bench: "ready", port });
    },
    (err) => {
      console.error("relay failed to start:", err);
      process.exit(1);
    },
  );
  process.once("SIGTERM", () => process.exit(0));
  process.once("SIGINT", () => process.exit(0));
}
