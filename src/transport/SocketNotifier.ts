import type { Notifier } from "../messaging/ports";
import type { PresenceNotifier } from "../messaging/PresenceService";
import type { ConversationSummary, Message, Presence, StatusUpdate, TypingEvent } from "../protocol";
import { presenceRoom, SYNCING_ROOM, userRoom } from "./rooms";
import type { TicksServer } from "./types";
import { StatusBatches } from "./clusterFanout";

/**
 * Reaches users through their rooms; with the Redis adapter a room spans every node.
 * Nothing here is durable: the database is the source of truth, this is the fast path.
 */
export class SocketNotifier implements Notifier, PresenceNotifier {
  constructor(
    private readonly io: TicksServer,
    private readonly ackTimeoutMs: number,
    /**
     * No adapter between nodes: every socket is local, so a cluster-wide offer is a local
     * one, made socket by socket (cheaper than a broadcast with acknowledgements, which
     * counts the expected replies and builds a broadcast operator per message).
     */
    private readonly singleNode = false,
  ) {
    this.statuses = new StatusBatches(io);
  }

  private readonly statuses: StatusBatches;

  fanOut(recipients: string[], message: Message): void {
    if (!this.singleNode) this.io.serverSideEmit("fanout:offer", { recipients, message });
  }

  localRecipients(userIds: string[]): string[] {
    return userIds.filter((userId) => !this.liveLocalSockets(userId).next().done);
  }

  deliver(recipient: string, message: Message, scope: "cluster" | "local" = "cluster"): Promise<boolean> {
    if (scope === "local" || this.singleNode) return this.deliverLocal(recipient, message);
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
    return new Promise((resolve) => {
      let waiting = 0;
      for (const socket of this.liveLocalSockets(recipient)) {
        waiting++;
        socket.timeout(this.ackTimeoutMs).emit("message:new", message, (err: Error | null) => {
          if (!err) resolve(true);
          else if (--waiting === 0) resolve(false);
        });
      }
      if (waiting === 0) resolve(false);
    });
  }

  /** The user's sockets on this node that finished their backlog, but `except`. */
  private *liveLocalSockets(userId: string, except?: string) {
    const nsp = this.io.of("/");
    for (const id of nsp.adapter.rooms.get(userRoom(userId)) ?? []) {
      const socket = nsp.sockets.get(id);
      if (socket && id !== except && !socket.rooms.has(SYNCING_ROOM)) yield socket;
    }
  }

  /**
   * One broadcast to the user's room, whichever nodes their devices are on. Syncing devices
   * are skipped as for live messages: they catch up after `sync:complete` from
   * `conversation:list` + `message:history`, which already hold the message. The client's
   * receipt is asked for (every `message:new` has one) and ignored.
   */
  ownCopy(sender: string, message: Message, origin?: string): void {
    if (this.singleNode) {
      // Usually nobody: one device per user. Then this costs a room lookup, not a broadcast.
      for (const socket of this.liveLocalSockets(sender, origin)) {
        socket.timeout(this.ackTimeoutMs).emit("message:new", message, () => {});
      }
      return;
    }
    this.io
      .to(userRoom(sender))
      .except(origin ? [origin, SYNCING_ROOM] : SYNCING_ROOM)
      .timeout(this.ackTimeoutMs)
      .emit("message:new", message, () => {});
  }

  /**
   * One node: straight to the user's room. Many: batched per tick (StatusBatches), so the
   * hundreds of receipts of a group message cost one inter-node message, not one each.
   */
  status(userId: string, update: StatusUpdate, except?: string): void {
    if (!this.singleNode) return this.statuses.add(except ? { userId, update, except } : { userId, update });
    const to = this.io.to(userRoom(userId));
    (except ? to.except(except) : to).emit("message:status", update);
  }

  conversationCreated(userIds: string[], conversation: ConversationSummary): void {
    if (userIds.length > 0) this.io.to(userIds.map(userRoom)).emit("conversation:new", conversation);
  }

  presence(update: Presence): void {
    this.io.to(presenceRoom(update.userId)).emit("presence", update);
  }

  typing(userIds: string[], event: TypingEvent): void {
    if (userIds.length > 0) this.io.to(userIds.map(userRoom)).emit("typing", event);
  }
}
