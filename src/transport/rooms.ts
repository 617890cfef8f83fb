/** Room names. A user's room holds every socket of theirs, on whichever node it is. */
export const userRoom = (userId: string): string => `user:${userId}`;
/** Sockets subscribed to a user's presence. */
export const presenceRoom = (userId: string): string => `presence:${userId}`;
/**
 * Sockets still draining their backlog. Live messages skip them, so a device sees its
 * backlog before anything newer (seq order per conversation); they get those in a later page.
 */
export const SYNCING_ROOM = "syncing";
