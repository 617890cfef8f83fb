import type { Knex } from "knex";
import { v7 as uuidv7 } from "uuid";
import type { Message } from "../../protocol";
import type { AppendResult } from "../../messaging/ports";
import { runPrepared } from "../prepared";
import { toMessage, toNumber } from "../rows";
import type { BatchOutcome } from "../GroupCommit";
import { senderKey, type BatchRow, type TargetPlan } from "./batchPlan";
import { LostDuplicateRace, TargetChanged } from "./errors";
import { findStored } from "./reads";
import { asStorageError, UNIQUE_VIOLATION } from "../unavailable";
import { plainValues, WRITE, WRITE_PLAIN, WRITE_PLAIN_PUSH, WRITE_PUSH, writeValues, type WriteRow } from "./writeStatement";

/**
 * Runs the write statement for `rows` (and the entries' `plans`), fills their outcomes;
 * returns the direct ones it left out: their pair was created by another batch after the
 * statement's snapshot.
 */
export async function write(
  db: Knex,
  rows: BatchRow[],
  plans: TargetPlan[],
  outcomes: BatchOutcome<AppendResult>[],
  pushDelayMs: number | undefined,
  versions: Map<string, number> = new Map(),
): Promise<BatchRow[]> {
  let result: WriteRow[];
  try {
    // Text without media, to no group: the statement without the entries' and groups' parts.
    const plain = plans.length === 0 && versions.size === 0 && rows.every((r) => r.req.kind === "text" && !r.req.media);
    const values = plain ? plainValues(rows) : writeValues(rows, plans, versions);
    const push = pushDelayMs !== undefined;
    const stmt = plain ? (push ? WRITE_PLAIN_PUSH : WRITE_PLAIN) : push ? WRITE_PUSH : WRITE;
    result = await runPrepared<WriteRow>(db, stmt, push ? [...values, pushDelayMs] : values);
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw new LostDuplicateRace();
    throw err;
  }
  const stored = new Map<string, { seq: number; conversationId: string; recipients: string[] }>();
  const recipients: WriteRow[] = [];
  const retries: BatchRow[] = [];
  for (const r of result) {
    if (r.ord !== null) retries.push(rows[toNumber(r.ord) - 1]!);
    else if (r.seq !== null) {
      stored.set(r.message_id, { seq: toNumber(r.seq), conversationId: r.conversation_id!, recipients: [] });
    } else recipients.push(r);
  }
  for (const r of recipients) stored.get(r.message_id)!.recipients.push(r.recipient!);
  const retried = new Set(retries);
  const unrouted: BatchRow[] = [];
  for (const row of rows) {
    if (!row.accept || outcomes[row.index] || retried.has(row)) continue;
    const s = stored.get(row.req.id);
    if (s) {
      outcomes[row.index] = {
        ok: true,
        value: { duplicate: false, message: messageOf(row, s.seq, s.conversationId), recipients: s.recipients },
      };
    } else if (row.conversationId !== null) {
      // Its conversation is known to exist: it was not written because `unchanged` found an
      // acted-on message or a group's members changed, and then nothing was.
      throw new TargetChanged();
    } else unrouted.push(row);
  }
  // A retry of a message stored earlier: the original answers it. A retry whose key
  // outlived its message (a partition dropped by hand): the rest of the batch is committed
  // with its outcomes set; the batch runs again (appendRetries.ts), which forgets such keys
  // first, so the retry is stored anew, as after expiry.
  if ((await answerRetries(db, retries, outcomes)) > 0) throw new LostDuplicateRace();
  return unrouted;
}

/**
 * First messages between these users: each conversation, its two members and their
 * directory entries, in one statement. The write statement creates them itself; this is
 * its fallback, for rows it left out because another batch created their pair after its
 * snapshot (then ON CONFLICT here leaves that row, which the next write finds by its
 * key). Sorted, so two batches creating the same pairs take the index locks in the same
 * order.
 */
export async function createDirect(db: Knex, rows: BatchRow[]): Promise<void> {
  const pairs = new Map<string, { id: string; from: string; to: string; at: Date }>();
  for (const r of rows) {
    // An id of its own, not the first message's: nobody should learn one from the other.
    if (!pairs.has(r.directKey!)) pairs.set(r.directKey!, { id: uuidv7(), from: r.req.from, to: r.to!, at: r.req.createdAt });
  }
  const missing = [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, p]) => ({ key, ...p }));
  await db.raw(
    `WITH v AS (
       SELECT * FROM unnest(?::uuid[], ?::text[], ?::timestamptz[], ?::text[], ?::text[]) AS v(id, key, at, a, b)
     ), created AS (
       INSERT INTO conversations (conversation_id, kind, direct_key, created_at, created_by)
       SELECT id, 'direct', key, at, a FROM v ORDER BY key
       ON CONFLICT (direct_key) DO NOTHING RETURNING conversation_id
     ), members AS (
       INSERT INTO conversation_members (conversation_id, user_id, joined_at)
       SELECT v.id, u.user_id, v.at FROM v JOIN created c ON c.conversation_id = v.id
       CROSS JOIN LATERAL (VALUES (v.a), (v.b)) AS u(user_id)
     )
     INSERT INTO users (user_id) SELECT DISTINCT u FROM v, LATERAL (VALUES (v.a), (v.b)) AS x(u)
     ON CONFLICT (user_id) DO NOTHING`,
    [
      missing.map((m) => m.id),
      missing.map((m) => m.key),
      missing.map((m) => m.at.toISOString()),
      missing.map((m) => m.from),
      missing.map((m) => m.to),
    ],
  );
}

/**
 * Answers each retry with its original, found by its (sender, clientMsgId) key after the
 * write; returns how many have none any more. The batch's new messages are committed by
 * then: if the read fails, only the retries fail (UNAVAILABLE; their senders send again).
 */
async function answerRetries(db: Knex, retries: BatchRow[], outcomes: BatchOutcome<AppendResult>[]): Promise<number> {
  if (retries.length === 0) return 0;
  let found;
  try {
    found = await findStored(db, retries.map((row) => row.req));
  } catch (err) {
    for (const row of retries) outcomes[row.index] = { ok: false, error: asStorageError(err) };
    return 0;
  }
  const originals = new Map(found.map((m) => [senderKey({ from: m.from_user_id, clientMsgId: m.client_msg_id }), m]));
  let gone = 0;
  for (const row of retries) {
    const original = originals.get(senderKey(row.req));
    if (original) outcomes[row.index] = { ok: true, value: { duplicate: true, message: toMessage(original) } };
    else gone++;
  }
  return gone;
}

function messageOf(row: BatchRow, seq: number, conversationId: string): Message {
  const { req } = row;
  return {
    id: req.id,
    clientMsgId: req.clientMsgId,
    conversationId,
    seq,
    from: req.from,
    to: row.to,
    content: row.content,
    createdAt: req.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    kind: req.kind,
    refId: row.refId,
    editedAt: null,
    deletedAt: null,
    reactions: [],
    media: req.kind === "text" ? req.media : null,
    group: null,
  };
}
