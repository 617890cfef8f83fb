import type { Notifier, OwnCopy } from "../messaging/ports";
import type { PresenceNotifier } from "../messaging/PresenceService";
import type { ConversationSummary, Message, Presence, StatusUpdate, TypingEvent } from "../protocol";
import { localSocketsOf, presenceRoom, SYNCING_ROOM, userRoom } from "./rooms";
import type { TicksServer, TicksSocket } from "./types";
import { StatusBatches } from "./clusterFanout";
import { ORDER_DEFAULTS, OrderedEmit, type EmitAck, type GiveUpReason, type OrderOptions } from "./orderedEmit";

/**
 * Reaches users' devices. A message goes to other nodes once (`fanout:offer`), and each
 * node emits it to its own sockets, so every `message:new` a socket gets is emitted by its
 * node, in seq order per conversation (OrderedEmit). Statuses, typing and presence go
 * through rooms, which with the Redis adapter span every node. Nothing here is durable:
 * the database is the source of truth, this is the fast path.
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
    private readonly order: OrderOptions = ORDER_DEFAULTS,
    /** A socket's live order gave a gap up (transport/orderedEmit.ts): counted. */
    private readonly gapGivenUp: (reason: GiveUpReason) => void = () => {},
  ) {
    this.statuses = new StatusBatches(io);
  }

  private readonly statuses: StatusBatches;
  /** Per socket id on this node: its live `message:new` in seq order (orderedEmit.ts). */
  private readonly orders = new Map<string, OrderedEmit>();

  fanOut(recipients: string[], message: Message, own?: OwnCopy): void {
    if (!this.singleNode) this.io.serverSideEmit("fanout:offer", own ? { recipients, message, own } : { recipients, message });
  }

  localRecipients(userIds: string[]): string[] {
    return userIds.filter((userId) => !this.liveLocalSockets(userId).next().done);
  }

  /**
   * Socket by socket on this node, each through its OrderedEmit (seq order per
   * conversation). A broadcast with acknowledgements would wait for every node of the
   * cluster to answer, and would put the message on other nodes' sockets out of their order.
   */
  deliverLocal(recipient: string, message: Message): Promise<boolean> {
    return new Promise((resolve) => {
      let waiting = 0;
      for (const socket of this.liveLocalSockets(recipient)) {
        waiting++;
        this.emitTo(socket, message, (err) => {
          if (!err) resolve(true);
          else if (--waiting === 0) resolve(false);
        });
      }
      if (waiting === 0) resolve(false);
    });
  }

  /**
   * The user's sockets on this node that finished their backlog, but `except`. One still
   * syncing is skipped and told so (`missedLive`): the message may be newer than the backlog
   * page it is reading, so it reads once more before `sync:complete` (syncBacklog.ts).
   */
  private *liveLocalSockets(userId: string, except?: string) {
    for (const socket of localSocketsOf(this.io, userId, except)) {
      if (!socket.rooms.has(SYNCING_ROOM)) yield socket;
      else socket.data.missedLive = true;
    }
  }

  /**
   * To the sender's other live devices on this node (every node does this for its own, on
   * the message's one fan-out). Syncing devices are skipped as for live messages: they catch
   * up after `sync:complete` from `conversation:list` + `message:history`, which already
   * hold the message. The client's receipt is asked for (every `message:new` has one) and
   * ignored. Usually nobody: one device per user, and this costs a room lookup.
   */
  ownCopyHere(sender: string, message: Message, origin?: string): void {
    for (const socket of this.liveLocalSockets(sender, origin)) this.emitTo(socket, message, () => {});
  }

  /**
   * The sending socket got `seq` in its acknowledgement, never as `message:new`: its order
   * must not wait for it. A syncing socket has no live position to keep yet.
   */
  acknowledged(socket: TicksSocket, message: Message): void {
    if (this.singleNode || !socket.connected || socket.rooms.has(SYNCING_ROOM)) return;
    this.orderOf(socket).acknowledged(message);
  }

  /**
   * One node: straight out, in the order this process stored them, which is seq order
   * already. Many: through the socket's OrderedEmit, as messages from other nodes can
   * overtake this node's own.
   */
  private emitTo(socket: TicksSocket, message: Message, ack: EmitAck): void {
    if (this.singleNode) socket.timeout(this.ackTimeoutMs).emit("message:new", message, ack);
    else this.orderOf(socket).offer(message, ack);
  }

  /** The socket's OrderedEmit, made on its first live message, dropped when it disconnects. */
  private orderOf(socket: TicksSocket): OrderedEmit {
    let order = this.orders.get(socket.id);
    if (!order) {
      const emit = (message: Message, ack: EmitAck) => socket.timeout(this.ackTimeoutMs).emit("message:new", message, ack);
      const made = new OrderedEmit(socket.data.userId, emit, this.order, { gaveUp: this.gapGivenUp });
      this.orders.set(socket.id, (order = made));
      socket.once("disconnect", () => {
        made.close();
        this.orders.delete(socket.id);
      });
    }
    return order;
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
