import type { OwnCopy } from "../messaging/ports";
import type { Message } from "../protocol";
import { localSocketsOf } from "./rooms";
import type { StatusDelivery, TicksServer } from "./types";

/**
 * Fan-out between nodes in whole batches, through the adapter's server-side events (one
 * publish each, received by every other node; no acknowledgement, no round trip):
 *
 * - `fanout:offer`: a stored message (direct or group), its recipients and its sender (and
 *   the sending connection, which gets no copy). Each node offers it to its own live
 *   devices of those users, in seq order per socket (orderedEmit.ts), and stores the
 *   receipts it gets: a 1,024-member group costs one inter-node message per message, not a
 *   broadcast with acknowledgements per member, and every `message:new` a socket gets is
 *   emitted by its own node, which is what can keep it in order.
 * - `fanout:status`: the statuses one tick produced (a group message's receipts come in
 *   batches of hundreds). Each node hands them to its own devices of each user. Every
 *   batch, of any size, takes this one channel, so statuses reach a device in the order
 *   they were sent.
 *
 * Best effort like every live path: a node that misses a batch (Redis down) leaves the
 * message `sent`, and backlog and redelivery bring it.
 */
export function listenForFanout(io: TicksServer, offerHere: (recipients: string[], message: Message, own?: OwnCopy) => void): void {
  io.on("fanout:offer", (offer) => {
    if (!offer || !Array.isArray(offer.recipients) || !offer.message) return;
    const own = offer.own && typeof offer.own.from === "string" ? offer.own : undefined;
    offerHere(offer.recipients, offer.message, own);
  });
  io.on("fanout:status", (batch) => {
    if (Array.isArray(batch)) emitStatusesHere(io, batch);
  });
}

/** Hands each status to this node's sockets of its user (syncing ones included), but `except`. */
export function emitStatusesHere(io: TicksServer, batch: StatusDelivery[]): void {
  for (const { userId, update, except } of batch) {
    for (const socket of localSocketsOf(io, userId, except)) socket.emit("message:status", update);
  }
}

/**
 * Collects the statuses of one tick and sends them as one batch: the receipts of a group
 * message, stored by one statement, produce hundreds of `message:status` at once.
 */
export class StatusBatches {
  private pending: StatusDelivery[] = [];

  constructor(private readonly io: TicksServer) {}

  add(delivery: StatusDelivery): void {
    this.pending.push(delivery);
    if (this.pending.length === 1) setImmediate(() => this.flush());
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    this.io.serverSideEmit("fanout:status", batch);
    emitStatusesHere(this.io, batch);
  }
}
