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

/** One client event's route: its handler and, for requests that write a row per member, their cost. */
type Route<E extends ClientEventName> = { handler: Handler<E>; cost?: (input: Payload<E>) => number };
type Routes = { [E in ClientEventName]?: Route<E> };

/**
 * The transport's whole job: validate → one call on the core → ack. The user id always
 * comes from the authenticated socket, never from the payload.
 *
 * Built once per server: every socket shares these handlers and the one listener returned,
 * which each socket registers with `onAny` (Socket.IO calls it with the socket as `this`).
 * A socket then holds no closure of its own per event: the ~50 it held before (a wrapper and
 * a handler per event) were most of what a connection cost the heap beyond Socket.IO's own
 * (docs/benchmarks.md, "Connects").
 */
export function clientEventListener(deps: HandlerDeps): (this: TicksSocket, event: string, ...args: unknown[]) => void {
  const routes = new Map(Object.entries(routesOf(deps))) as Map<string, Route<ClientEventName>>;
  return function (this: TicksSocket, event: string, ...args: unknown[]) {
    const route = routes.get(event);
    const ack = typeof args[args.length - 1] === "function" ? (args.pop() as (reply: unknown) => void) : null;
    // Without a callback nobody could learn the outcome: ignored, nothing changes.
    if (!ack) return;
    // An event the protocol does not have: answered, so the client is not left waiting.
    if (!route) {
      return ack({ ok: false, error: { code: "BAD_REQUEST", message: `unknown event ${JSON.stringify(String(event)).slice(0, 80)}` } });
    }
    handle(this, deps, event as ClientEventName, route, args[0], ack);
  };
}

function routesOf(deps: HandlerDeps): Routes {
  const { messaging, presence, groups } = deps;
  // A socket learns the seq of what it writes from the acknowledgement, never as
  // `message:new`: its live order must not wait for that seq (transport/orderedEmit.ts).
  const wrote = async (socket: TicksSocket, result: Promise<SendResult>): Promise<SendResult> => {
    const r = await result;
    if (!r.duplicate) deps.order.acknowledged(socket, r.message);
    return r;
  };
  // Every membership change: one command on the conversation, written like a message.
  const change = (s: TicksSocket, p: { clientMsgId: string; conversationId: string }, command: GroupCommand) =>
    wrote(s, groups.change(s.data.userId, { clientMsgId: p.clientMsgId, conversationId: p.conversationId, command }, s.id));
  const routes: Routes = {
    "message:send": {
      handler: (p, s) => {
        const target = p.to !== undefined ? { to: p.to } : { conversationId: p.conversationId! };
        const media = p.media ? { media: p.media } : {};
        return wrote(s, messaging.send(s.data.userId, { clientMsgId: p.clientMsgId, target, content: p.content, ...media }, s.id));
      },
    },
    "message:edit": { handler: (p, s) => wrote(s, messaging.entry(s.data.userId, "edit", p, s.id)) },
    "message:delete": { handler: (p, s) => wrote(s, messaging.entry(s.data.userId, "delete", { ...p, content: "" }, s.id)) },
    "message:react": { handler: (p, s) => wrote(s, messaging.entry(s.data.userId, "reaction", { ...p, content: p.emoji }, s.id)) },
    "message:read": { handler: async (p, s) => ({ updated: await messaging.markRead(s.data.userId, p.messageIds, s.id) }) },
    "message:history": { handler: (p, s) => messaging.history(s.data.userId, p) },
    "conversation:list": { handler: (p, s) => messaging.listConversations(s.data.userId, p) },
    "group:create": {
      handler: async (p, s) => ({ conversationId: await groups.create(s.data.userId, p.title, p.members) }),
      cost: (p) => membersCost(p.members.length + 1),
    },
    "group:add": { handler: (p, s) => change(s, p, { action: "add", userIds: p.userIds }), cost: (p) => membersCost(p.userIds.length) },
    "group:remove": { handler: (p, s) => change(s, p, { action: "remove", userId: p.userId }) },
    "group:leave": { handler: (p, s) => change(s, p, { action: "leave" }) },
    "group:update": { handler: (p, s) => change(s, p, { action: "title", title: p.title }) },
    "group:role": { handler: (p, s) => change(s, p, { action: "role", userId: p.userId, role: p.role }) },
    typing: {
      handler: async (p, s) => {
        await messaging.typing(s.data.userId, p.conversationId, p.typing);
        return {};
      },
    },
    "presence:subscribe": {
      handler: async (p, s) => {
        // Join first, so no change between the snapshot and the subscription is missed.
        await s.join(p.userIds.map(presenceRoom));
        return { presence: await presence.snapshot(p.userIds) };
      },
    },
    "push:register": {
      handler: async (p, s) => {
        await deps.push.register(s.data.userId, s.data.deviceId, p.pushkey, p.appId);
        return {};
      },
    },
    "push:unregister": { handler: async (p, s) => ({ removed: await deps.push.unregister(s.data.userId, p.pushkey) }) },
    "auth:refresh": { handler: (p, s) => deps.tokens.refresh(s, p.token) },
    "media:upload": { handler: (p, s) => deps.media.requestUpload(s.data.userId, p) },
    "media:url": { handler: (p, s) => deps.media.downloadUrl(s.data.userId, p.mediaId) },
    "status:sync": { handler: (p, s) => deps.statuses.sync(s.data.userId, p.after, p.limit) },
    "message:info": { handler: (p, s) => deps.statuses.info(s.data.userId, p.messageId) },
  };
  const missing = CLIENT_EVENTS.filter((e) => !routes[e]);
  if (missing.length > 0) throw new Error(`no handler for ${missing.join(", ")}`);
  return routes;
}

/**
 * What a request that writes one membership row per user costs from the rate budget, in
 * events: one for every MEMBERS_PER_EVENT members (docs/rate-limits.md). A 256-member
 * group:create costs 32 events, not 1: the budget follows the rows, not the packets.
 */
export const MEMBERS_PER_EVENT = 8;
const membersCost = (members: number): number => Math.ceil(members / MEMBERS_PER_EVENT);

/**
 * One request: rate budget, parse, handler, ack. `route.cost`: events the parsed request
 * takes from the rate budget in all (default 1). The first is taken before parsing, as for
 * every event; the rest once the payload says how many.
 */
function handle<E extends ClientEventName>(
  socket: TicksSocket,
  deps: HandlerDeps,
  event: E,
  route: Route<E>,
  payload: unknown,
  ack: (reply: unknown) => void,
): void {
  if (deps.closing()) return ack(toErr(new AppError("UNAVAILABLE", "server is shutting down, retry"), deps.log, {}));
  const started = process.hrtime.bigint();
  const done = (outcome: string) => deps.observe?.(event, outcome, Number(process.hrtime.bigint() - started) / 1e9);
  const work = (async () => {
    try {
      if (!(await deps.rateLimiter.allow(socket.data.userId))) {
        throw new AppError("RATE_LIMITED", "too many events, slow down");
      }
      const input = parsePayload(event, payload);
      const extra = route.cost ? route.cost(input) - 1 : 0;
      if (extra > 0 && !(await deps.rateLimiter.allow(socket.data.userId, extra))) {
        throw new AppError("RATE_LIMITED", "too many members added at once, slow down");
      }
      ack({ ok: true, ...(await route.handler(input, socket)) });
      done("ok");
    } catch (err) {
      const reply = toErr(err, deps.log, { event, ...logContext(socket) });
      ack(reply);
      done(reply.error.code);
    }
  })();
  deps.track(work);
}
