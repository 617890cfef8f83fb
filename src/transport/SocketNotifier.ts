import type { Notifier } from "../messaging/ports";
import type { PresenceNotifier } from "../messaging/PresenceService";
import type { ConversationSummary, Message, Presence, StatusUpdate, TypingEvent } from "../protocol";
import { presenceRoom, SYNCING_ROOM, userRoom } from "./rooms";
import type { TicksServer } from "./types";

/**
 * Reaches users through their rooms; with the Redis adapter a room spans every node.
 * Nothing here is durable: the database is the source of truth, this is the fast path.
 */
export class SocketNotifier implements Notifier, PresenceNotifier {
  constructor(
    private readonly io: TicksServer,
    private readonly ackTimeoutMs: number,
  ) {}

  deliver(recipient: string, message: Message, scope: "cluster" | "local" = "cluster"): Promise<boolean> {
    if (scope === "local") return this.deliverLocal(recipient, message);
    return new Promise((resolve) => {
      this.io
        .to(userRoom(recipient))
        .except(SYNCING_ROOM)
        .timeout(this.ackTimeoutMs)
        // On timeout `replies` still holds the devices that did answer.
        .emit("message:new", message, (_err: Error | null, replies: unknown[]) => resolve((replies?.length ?? 0) > 0));
    });
  }

  /**
   * Socket by socket on this node: a local broadcast with acknowledgements would still wait
   * for every node of the cluster to answer, that is for the whole timeout.
   */
  private deliverLocal(recipient: string, message: Message): Promise<boolean> {
    const nsp = this.io.of("/");
    const sockets = [...(nsp.adapter.rooms.get(userRoom(recipient)) ?? [])]
      .map((id) => nsp.sockets.get(id))
      .filter((s) => s !== undefined && !s.rooms.has(SYNCING_ROOM));
    if (sockets.length === 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      let waiting = sockets.length;
      for (const socket of sockets) {
        socket!.timeout(this.ackTimeoutMs).emit("message:new", message, (err: Error | null) => {
          if (!err) resolve(true);
          else if (--waiting === 0) resolve(false);
        });
      }
    });
  }

  /**
   * One broadcast to the user's room, whichever nodes their devices are on. Syncing devices
   * are skipped as for live messages: they catch up after `sync:complete` from
   * `conversation:list` + `message:history`, which already hold the message. The client's
   * receipt is asked for (every `message:new` has one) and ignored.
   */
  ownCopy(sender: string, message: Message, origin?: string): void {
    this.io
      .to(userRoom(sender))
      .except(origin ? [origin, SYNCING_ROOM] : SYNCING_ROOM)
      .timeout(this.ackTimeoutMs)
      .emit("message:new", message, () => {});
  }

  status(userId: string, update: StatusUpdate, except?: string): void {
    const to = this.io.to(userRoom(userId));
    (except ? to.except(except) : to).emit("message:status", update);
  }

  conversationCreated(userId: string, conversation: ConversationSummary): void {
    this.io.to(userRoom(userId)).emit("conversation:new", conversation);
  }

  presence(update: Presence): void {
    this.io.to(presenceRoom(update.userId)).emit("presence", update);
  }

  typing(userIds: string[], event: TypingEvent): void {
    if (userIds.length > 0) this.io.to(userIds.map(userRoom)).emit("typing", event);
  }
}
