/** Why a batch must run again; the store (SqlMessageStore) catches both and retries. */

/** A concurrent retry committed the same (sender, clientMsgId) first: redo the batch. */
export class LostDuplicateRace extends Error {}

/**
 * A message this batch edits, deletes or reacts to changed (or went) between the reads and
 * the write, e.g. another node deleted it: nothing was written; redo the batch, whose reads
 * then see the new state.
 */
export class TargetChanged extends Error {}
