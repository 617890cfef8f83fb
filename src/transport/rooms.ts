import type { TicksServer, TicksSocket } from "./types";

/** Room names. A user's room holds every socket of theirs, on whichever node it is. */
export const userRoom = (userId: string): string => `user:${userId}`;
/** Sockets subscribed to a user's presence. */
export const presenceRoom = (userId: string): string => `presence:${userId}`;
/**
 * Sockets still draining their backlog. Live messages skip them, so a device sees its
 * backlog before anything newer (seq order per conversation); they get those in a later page.
 */
export const SYNCING_ROOM = "syncing";

/** The user's sockets on this node (the adapter's rooms here hold local sockets only), but `except`. */
export function* localSocketsOf(io: TicksServer, userId: string, except?: string): Generator<TicksSocket> {
  const nsp = io.of("/");
  for (const id of nsp.adapter.rooms.get(userRoom(userId)) ?? []) {
    const socket = id === except ? undefined : nsp.sockets.get(id);
    if (socket) yield socket;
  }
}
