import type { Logger } from "../log";
import type { MessagingService } from "../messaging/MessagingService";
import type { GroupService } from "../messaging/GroupService";
import type { GroupCommand } from "../messaging/groupRules";
import { AppError, type ClientEventName, type ClientToServerEvents, type SendResult } from "../protocol";
import { CLIENT_EVENTS, parsePayload, type Payload } from "../protocol/schemas";
import type { MediaService } from "../media/MediaService";
import type { PresenceService } from "../messaging/PresenceService";
import type { StatusStream } from "../messaging/StatusStream";
import type { PushService } from "../messaging/PushService";
import type { RateLimiter } from "./ports";
import type { TokenLifetimes } from "./TokenLifetimes";
import type { SocketNotifier } from "./SocketNotifier";
import { presenceRoom } from "./rooms";
import { toErr } from "./reply";
import { logContext, type TicksSocket } from "./types";

type AckValue<E extends ClientEventName> = Parameters<Parameters<ClientToServerEvents[E]>[1]>[0];
type OkBody<E extends ClientEventName> = Omit<Extract<AckValue<E>, { ok: true }>, "ok">;
type Handler<E extends ClientEventName> = (input: Payload<E>, socket: TicksSocket) => Promise<OkBody<E>>;

export type HandlerDeps = {
  messaging: MessagingService;
  media: Pick<MediaService, "requestUpload" | "downloadUrl">;
  groups: GroupService;
  /** v3: status:sync and message:info. */
  statuses: Pick<StatusStream, "sync" | "info">;
  presence: PresenceService;
  push: PushService;
  rateLimiter: RateLimiter;
  /** Each socket's live order: what it wrote is acknowledged, not sent to it (SocketNotifier). */
  order: Pick<SocketNotifier, "acknowledged">;
  /** Token expiry on live sockets; answers `auth:refresh`. */
  tokens: Pick<TokenLifetimes, "refresh" | "track">;
  log: Logger;
  /** Every handler's work is registered here so shutdown can wait for it. */
  track: (work: Promise<unknown>) => void;
  /** True once shutdown began: new events are refused as UNAVAILABLE (retry elsewhere). */
  closing: () => boolean;
  /** Time from receiving an event to acknowledging it. */
  observe?: (event: ClientEventName, outcome: string, seconds: number) => void;
};

/**
 * The transport's whole job: validate → one call on the core → ack. The user id always
 * comes from the authenticated socket, never from the payload.
 */
export function registerHandlers(socket: TicksSocket, deps: HandlerDeps): void {
  const { messaging, presence } = deps;
  const userId = socket.data.userId;

  // This socket learns the seq of what it writes from the acknowledgement, never as
  // `message:new`: its live order must not wait for that seq (transport/orderedEmit.ts).
  const wrote = async (result: Promise<SendResult>): Promise<SendResult> => {
    const r = await result;
    if (!r.duplicate) deps.order.acknowledged(socket, r.message);
    return r;
  };
  on(socket, deps, "message:send", async (p) => {
    const target = p.to !== undefined ? { to: p.to } : { conversationId: p.conversationId! };
    const media = p.media ? { media: p.media } : {};
    return wrote(messaging.send(userId, { clientMsgId: p.clientMsgId, target, content: p.content, ...media }, socket.id));
  });
  on(socket, deps, "message:edit", (p) => wrote(messaging.entry(userId, "edit", p, socket.id)));
  on(socket, deps, "message:delete", (p) => wrote(messaging.entry(userId, "delete", { ...p, content: "" }, socket.id)));
  on(socket, deps, "message:react", (p) => wrote(messaging.entry(userId, "reaction", { ...p, content: p.emoji }, socket.id)));
  on(socket, deps, "message:read", async (p) => ({ updated: await messaging.markRead(userId, p.messageIds, socket.id) }));
  on(socket, deps, "message:history", (p) => messaging.history(userId, p));
  on(socket, deps, "conversation:list", (p) => messaging.listConversations(userId, p));
  const { groups } = deps;
  on(
    socket,
    deps,
    "group:create",
    async (p) => ({ conversationId: await groups.create(userId, p.title, p.members) }),
    (p) => membersCost(p.members.length + 1),
  );
  // Every membership change: one command on the conversation, written like a message.
  const change = (p: { clientMsgId: string; conversationId: string }, command: GroupCommand) =>
    wrote(groups.change(userId, { clientMsgId: p.clientMsgId, conversationId: p.conversationId, command }, socket.id));
  on(
    socket,
    deps,
    "group:add",
    (p) => change(p, { action: "add", userIds: p.userIds }),
    (p) => membersCost(p.userIds.length),
  );
  on(socket, deps, "group:remove", (p) => change(p, { action: "remove", userId: p.userId }));
  on(socket, deps, "group:leave", (p) => change(p, { action: "leave" }));
  on(socket, deps, "group:update", (p) => change(p, { action: "title", title: p.title }));
  on(socket, deps, "group:role", (p) => change(p, { action: "role", userId: p.userId, role: p.role }));
  on(socket, deps, "typing", async (p) => {
    await messaging.typing(userId, p.conversationId, p.typing);
    return {};
  });
  on(socket, deps, "presence:subscribe", async (p, s) => {
    // Join first, so no change between the snapshot and the subscription is missed.
    await s.join(p.userIds.map(presenceRoom));
    return { presence: await presence.snapshot(p.userIds) };
  });
  on(socket, deps, "push:register", async (p, s) => {
    await deps.push.register(userId, s.data.deviceId, p.pushkey, p.appId);
    return {};
  });
  on(socket, deps, "push:unregister", async (p) => ({ removed: await deps.push.unregister(userId, p.pushkey) }));
  on(socket, deps, "auth:refresh", (p, s) => deps.tokens.refresh(s, p.token));
  on(socket, deps, "media:upload", (p) => deps.media.requestUpload(userId, p));
  on(socket, deps, "media:url", (p) => deps.media.downloadUrl(userId, p.mediaId));
  on(socket, deps, "status:sync", (p) => deps.statuses.sync(userId, p.after, p.limit));
  on(socket, deps, "message:info", (p) => deps.statuses.info(userId, p.messageId));
  // An event the protocol does not have: answered, if it can be, so the client is not left waiting.
  const known = new Set<string>(CLIENT_EVENTS);
  socket.onAny((event: string, ...args: unknown[]) => {
    const ack = args[args.length - 1];
    if (known.has(event) || typeof ack !== "function") return;
    ack({ ok: false, error: { code: "BAD_REQUEST", message: `unknown event ${JSON.stringify(String(event)).slice(0, 80)}` } });
  });
}

/**
 * What a request that writes one membership row per user costs from the rate budget, in
 * events: one for every MEMBERS_PER_EVENT members (docs/rate-limits.md). A 256-member
 * group:create costs 32 events, not 1: the budget follows the rows, not the packets.
 */
export const MEMBERS_PER_EVENT = 8;
const membersCost = (members: number): number => Math.ceil(members / MEMBERS_PER_EVENT);

/**
 * `cost`: events the parsed request takes from the rate budget in all (default 1). The first
 * is taken before parsing, as for every event; the rest once the payload says how many.
 */
function on<E extends ClientEventName>(
  socket: TicksSocket,
  deps: HandlerDeps,
  event: E,
  handler: Handler<E>,
  cost?: (input: Payload<E>) => number,
): void {
  // Registered untyped: a client may send anything, in any arity.
  (socket as unknown as { on(ev: string, fn: (...args: unknown[]) => void): void }).on(event, (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? (args.pop() as (reply: unknown) => void) : null;
    // Without a callback nobody could learn the outcome: ignored, nothing changes.
    if (!ack) return;
    if (deps.closing()) return ack(toErr(new AppError("UNAVAILABLE", "server is shutting down, retry"), deps.log, {}));
    const started = process.hrtime.bigint();
    const done = (outcome: string) => deps.observe?.(event, outcome, Number(process.hrtime.bigint() - started) / 1e9);
    const work = (async () => {
      try {
        if (!(await deps.rateLimiter.allow(socket.data.userId))) {
          throw new AppError("RATE_LIMITED", "too many events, slow down");
        }
        const input = parsePayload(event, args[0]);
        const extra = cost ? cost(input) - 1 : 0;
        if (extra > 0 && !(await deps.rateLimiter.allow(socket.data.userId, extra))) {
          throw new AppError("RATE_LIMITED", "too many members added at once, slow down");
        }
        ack({ ok: true, ...(await handler(input, socket)) });
        done("ok");
      } catch (err) {
        const reply = toErr(err, deps.log, { event, ...logContext(socket) });
        ack(reply);
        done(reply.error.code);
      }
    })();
    deps.track(work);
  });
}
