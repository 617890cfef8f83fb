import type { Knex } from "knex";
import type { AppendRequest, AppendResult } from "../../messaging/ports";
import { toMessage } from "../rows";
import type { BatchOutcome } from "../GroupCommit";
import { planBatch, senderKey, type Conversations, type TargetRow } from "./batchPlan";
import { findStored, loadConversations } from "./reads";
import { createDirect, write } from "./write";

/**
 * Stores a batch of messages and entries (edits, deletes, reactions). A batch of direct
 * messages is ONE statement (its own transaction): it finds retries already stored (whose
 * originals are then read by their key, a second statement only for a batch that holds one),
 * finds each direct conversation by its key, hands out seq, inserts the messages and
 * their delivery rows, and commits. Per conversation, the row lock taken on
 * `conversations` hands out a contiguous seq range in request order, gap-free: any
 * failure rolls the statement back whole. Messages to a given conversation (groups) and
 * entries need reads first (members for the routing rules, the messages entries act on
 * for messaging/entryRules), which also answer stored retries. A first message between
 * two users is the same one statement: it creates the conversation (writeParts.ts,
 * CREATED). Only when another node created that pair after the statement's snapshot does
 * the batch take two more: createDirect (which then finds it there) and the write again.
 * Every statement's cost follows the batch, not the table: each lookup is one index probe
 * per request. Returns one outcome per request, in order; refusals (NOT_FOUND, FORBIDDEN)
 * are per request and store nothing. Throws LostDuplicateRace when a concurrent retry got
 * in first, TargetChanged when an acted-on message changed meanwhile: run it again.
 */
export type AppendOptions = {
  /** Where the named statements run (database.ts: createHotPathDatabase). @default db */
  hot?: Knex;
  /**
   * Push notifications on: each recipient with a pushkey gets a push outbox row, due this
   * long after the message's createdAt, in the same statement as the message. Unset: the
   * statement has no push part at all.
   */
  pushDelayMs?: number;
  /**
   * Filled in place. A batch runs more than one statement when a first message's pair was
   * created by another node meanwhile, and each commits on its own: when a later one fails, the caller
   * runs the batch again with the outcomes the earlier one committed still set, and those
   * requests are not run again (they stay `duplicate: false`, with their recipients).
   */
  outcomes?: BatchOutcome<AppendResult>[];
};
export async function appendBatch(db: Knex, reqs: AppendRequest[], options: AppendOptions = {}): Promise<BatchOutcome<AppendResult>[]> {
  const hot = options.hot ?? db;
  const push = options.pushDelayMs;
  const outcomes: BatchOutcome<AppendResult>[] = options.outcomes ?? new Array(reqs.length);
  // The same retry twice in one batch: only the first goes to the database.
  const firstInBatch = new Map<string, number>();
  const firsts: number[] = [];
  reqs.forEach((req, i) => {
    const key = senderKey(req);
    if (firstInBatch.has(key)) return;
    firstInBatch.set(key, i);
    if (!outcomes[i]) firsts.push(i);
  });

  const givenIds: string[] = [];
  const refIds: string[] = [];
  const actors: string[] = [];
  for (const i of firsts) {
    const req = reqs[i]!;
    if (req.kind !== "text") {
      refIds.push(req.refId);
      actors.push(req.from);
    }
    else if ("conversationId" in req.target) givenIds.push(req.target.conversationId);
  }
  // Reads, only when the rules need them: stored retries are then answered by the same
  // parallel reads (a retry is answered before it is judged). Reads need no transaction:
  // what they decide is checked again by the one write (its constraints, and the
  // acted-on messages' row versions).
  let given: Conversations = new Map();
  let targets = new Map<string, TargetRow>();
  let fresh = firsts;
  if (givenIds.length > 0 || refIds.length > 0) {
    const [existing, facts] = await Promise.all([
      findStored(hot, firsts.map((i) => reqs[i]!)),
      loadConversations(db, givenIds, refIds, actors),
    ]);
    ({ conversations: given, targets } = facts);
    const originals = new Map(existing.map((row) => [senderKey({ from: row.from_user_id, clientMsgId: row.client_msg_id }), row]));
    fresh = firsts.filter((i) => {
      const original = originals.get(senderKey(reqs[i]!));
      if (original) outcomes[i] = { ok: true, value: { duplicate: true, message: toMessage(original) } };
      return !original;
    });
  }

  const { rows, plans, repeatOf } = planBatch(reqs, fresh, given, targets, outcomes);

  let unrouted = await write(hot, rows, [...plans.values()], outcomes, push, seenVersions(given));
  if (unrouted.length > 0) {
    // First messages whose pair another node created while the write ran (its ON CONFLICT
    // found the row, which its snapshot could not see): store them in that conversation.
    await createDirect(db, unrouted);
    unrouted = await write(hot, unrouted, [], outcomes, push);
    if (unrouted.length > 0) throw new Error("direct conversation missing right after it was created");
  }

  for (const [i, first] of repeatOf) outcomes[i] = asRepeat(outcomes[first]!);
  // Same retry twice in one batch: the second answers what the first got.
  reqs.forEach((req, i) => {
    if (!outcomes[i]) outcomes[i] = asRepeat(outcomes[firstInBatch.get(senderKey(req))!]!);
  });
  return outcomes;
}

/** The membership versions the reads saw, of the groups the batch writes to (direct ones never change). */
function seenVersions(given: Conversations): Map<string, number> {
  const seen = new Map<string, number>();
  for (const [id, c] of given) if (c.kind === "group") seen.set(id, c.version ?? 0);
  return seen;
}

/** What a repeat of a request answers: the first one's message as a duplicate, or its error. */
const asRepeat = (o: BatchOutcome<AppendResult>): BatchOutcome<AppendResult> =>
  o.ok ? { ok: true, value: { duplicate: true, message: o.value.message } } : o;
