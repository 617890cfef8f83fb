import type { Knex } from "knex";
import type { AppendRequest, AppendResult } from "../../messaging/ports";
import type { BatchOutcome } from "../GroupCommit";
import { asStorageError, isRetryablePgError, isRowDataPgError } from "../unavailable";
import { appendBatch, type AppendOptions } from "./appendBatch";
import { LostDuplicateRace, TargetChanged } from "./errors";
import { forgetGoneOriginals } from "./reads";

type Options = Pick<AppendOptions, "hot" | "pushDelayMs">;

/**
 * A group commit's batch of appends, as GroupCommit flushes it: one outcome per request.
 * A batch whose statement fails on its data (a constraint, a trigger: not a lost
 * connection or a timeout) is split in halves, each run again, in order, until the
 * requests that fail are alone: they fail, the others of the batch are stored. Any other
 * failure fails the batch (UNAVAILABLE).
 */
export async function appendIsolated(
  db: Knex,
  reqs: AppendRequest[],
  options: Options,
  committed?: BatchOutcome<AppendResult>[],
): Promise<BatchOutcome<AppendResult>[]> {
  const outcomes: BatchOutcome<AppendResult>[] = committed ?? new Array(reqs.length);
  try {
    return await appendWithRetries(db, reqs, options, outcomes);
  } catch (err) {
    if (reqs.length === 1 || !isRowDataPgError(err)) throw asStorageError(err);
    keepCommitted(outcomes);
    const half = Math.ceil(reqs.length / 2);
    const run = (from: number, to: number) =>
      appendIsolated(db, reqs.slice(from, to), options, outcomes.slice(from, to)).catch((e: unknown) =>
        reqs.slice(from, to).map((): BatchOutcome<AppendResult> => ({ ok: false, error: asStorageError(e) })),
      );
    // In order: a conversation's requests in the first half commit before its later ones.
    const first = await run(0, half);
    return [...first, ...(await run(half, reqs.length))];
  }
}

/** Retried when a concurrent batch won a duplicate race, changed an acted-on message or deadlocked. */
async function appendWithRetries(
  db: Knex,
  reqs: AppendRequest[],
  options: Options,
  outcomes: BatchOutcome<AppendResult>[],
): Promise<BatchOutcome<AppendResult>[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await appendBatch(db, reqs, { ...options, outcomes });
    } catch (err) {
      const retryable = err instanceof LostDuplicateRace || err instanceof TargetChanged || isRetryablePgError(err);
      if (!retryable || attempt >= 5) throw err;
      // A key whose message went with a hand-dropped partition would lose every race: forget it.
      // Best effort: if this fails too, the next attempt reports the database's state.
      if (err instanceof LostDuplicateRace) await forgetGoneOriginals(db, reqs).catch(() => {});
      keepCommitted(outcomes);
    }
  }
}

/** Keeps only what an earlier statement of the batch committed; the rest is judged again. */
function keepCommitted(outcomes: BatchOutcome<AppendResult>[]): void {
  outcomes.forEach((o, i) => {
    if (!o.ok || o.value.duplicate) delete outcomes[i];
  });
}
