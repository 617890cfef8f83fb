import type { Knex } from "knex";
import type { BatchOutcome } from "./GroupCommit";
import { isRetryablePgError, unavailableOnDbError } from "./unavailable";

export type LastSeenRequest = { userId: string; at: Date };

/**
 * Many users' "last seen" in one UPDATE: a crowd going offline at once (a network cut, a
 * node's sockets reaped after its death) costs one statement per batch, not one per user.
 * Each user's latest time wins, in the batch and against the stored value (GREATEST), so
 * batches from several nodes, or with clocks a little apart, never move it back. Users are
 * sorted, so two nodes' batches meet the same rows in one order; a deadlock that happens
 * anyway is retried.
 */
export async function writeLastSeen(db: Knex, reqs: LastSeenRequest[]): Promise<BatchOutcome<void>[]> {
  const latest = new Map<string, Date>();
  for (const { userId, at } of reqs) {
    const seen = latest.get(userId);
    if (!seen || at > seen) latest.set(userId, at);
  }
  const users = [...latest.keys()].sort();
  const times = users.map((u) => latest.get(u)!.toISOString());
  await unavailableOnDbError(async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        await db.raw(
          `UPDATE users u SET last_seen = GREATEST(u.last_seen, v.at)
           FROM unnest(?::text[], ?::timestamptz[]) AS v(user_id, at) WHERE u.user_id = v.user_id`,
          [users, times],
        );
        return;
      } catch (err) {
        if (attempt >= 3 || !isRetryablePgError(err)) throw err;
      }
    }
  });
  return reqs.map(() => ({ ok: true, value: undefined }));
}
