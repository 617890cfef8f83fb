/**
 * The status stream's storage (storage/SqlStatusStream.ts). Rows are written by the receipt
 * statements themselves (MessageStore.markDelivered / markRead), in the commit that moves
 * the status; this port reads them, answers message info and sweeps them.
 */
import type { Status } from "../protocol";

/** One change in a user's stream; `pos` is the stream position (a bigint, as text). */
export type StreamRow = { pos: string; messageId: string; status: "delivered" | "read"; by: string; at: Date };

export type RecipientInfo = { userId: string; status: Status; deliveredAt: Date | null; readAt: Date | null };

export interface StatusStreamStore {
  /** Up to `limit` changes of `owner`'s stream after `afterPos` (from the start when null), oldest first, unexpired only. */
  page(owner: string, afterPos: string | null, limit: number, now: Date): Promise<StreamRow[]>;
  /** Recipients of `messageId` when `sender` sent it and it has not expired; else null (which of the two is not said). */
  recipients(sender: string, messageId: string, now: Date): Promise<RecipientInfo[] | null>;
  /** Deletes up to `limit` changes whose message expired; returns how many. */
  deleteExpired(now: Date, limit: number): Promise<number>;
  /** The key that seals cursors (32 bytes), the same on every node. */
  cursorKey(): Promise<Uint8Array>;
}
