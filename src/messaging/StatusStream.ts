import type { Clock } from "../clock";
import { AppError, type MessageInfoResult, type StatusSyncResult, type StatusUpdate } from "../protocol";
import { LIMITS } from "../protocol/schemas";
import type { StatusCursors } from "./StatusCursors";
import type { StatusStreamStore, StreamRow } from "./statusPorts";

/**
 * Each user's status stream (docs/protocol.md): `status:sync` pages, `message:info`, the
 * cursors live `message:status` events carry, and the stream's share of the expiry sweep.
 * Rows are written by the receipts themselves (storage/receipts.ts), in the same commit.
 */
export class StatusStream {
  constructor(
    private readonly store: StatusStreamStore,
    private readonly cursors: StatusCursors,
    private readonly clock: Clock,
  ) {}

  /** The cursor of position `pos` in `userId`'s stream. */
  cursor(userId: string, pos: string): string {
    return this.cursors.seal(userId, pos);
  }

  /** The caller's stream after `after` (a cursor this server gave them), oldest first. */
  async sync(userId: string, after: string | undefined, limit: number = LIMITS.statusSyncDefault): Promise<StatusSyncResult> {
    const afterPos = after === undefined ? null : this.cursors.open(userId, after);
    const rows = await this.store.page(userId, afterPos, limit + 1, this.clock.now());
    const hasMore = rows.length > limit;
    const updates = this.group(userId, rows.slice(0, limit));
    return { updates, cursor: updates.at(-1)?.cursor ?? after ?? null, hasMore };
  }

  /** Per-recipient ticks of a message, for its sender only. */
  async info(sender: string, messageId: string): Promise<MessageInfoResult> {
    const recipients = await this.store.recipients(sender, messageId, this.clock.now());
    // One answer for "not yours" and "no such message": it must not tell them apart.
    if (!recipients) throw new AppError("NOT_FOUND", "no such message of yours");
    return {
      recipients: recipients.map((r) => ({
        userId: r.userId,
        status: r.status,
        deliveredAt: r.deliveredAt?.toISOString() ?? null,
        readAt: r.readAt?.toISOString() ?? null,
      })),
    };
  }

  /** Deletes changes whose message expired, in bounded batches; returns how many went. */
  async sweepExpired(batchSize: number, maxBatches: number): Promise<number> {
    let total = 0;
    for (let i = 0; i < maxBatches; i++) {
      const n = await this.store.deleteExpired(this.clock.now(), batchSize);
      total += n;
      if (n < batchSize) break;
    }
    return total;
  }

  /** Consecutive changes with the same status, reader and time are one update, as they were one event. */
  private group(userId: string, rows: StreamRow[]): Array<StatusUpdate & { cursor: string }> {
    const groups: { first: StreamRow; ids: string[]; pos: string }[] = [];
    for (const row of rows) {
      const g = groups.at(-1);
      if (g && g.first.status === row.status && g.first.by === row.by && g.first.at.getTime() === row.at.getTime()) {
        g.ids.push(row.messageId);
        g.pos = row.pos;
      } else groups.push({ first: row, ids: [row.messageId], pos: row.pos });
    }
    return groups.map(({ first, ids, pos }) => ({
      messageIds: ids,
      status: first.status,
      by: first.by,
      at: first.at.toISOString(),
      cursor: this.cursors.seal(userId, pos),
    }));
  }
}
