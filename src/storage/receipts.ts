import type { Knex } from "knex";
import type { StatusChange } from "../messaging/ports";
import type { BatchOutcome } from "./GroupCommit";
import { runPrepared, statement } from "./prepared";
import { unavailableOnDbError } from "./unavailable";

/**
 * Receipts of many devices in one UPDATE. Only rows of the caller as recipient move, and
 * only forward: sent → delivered → read (read also sets delivered_at; an expired message
 * is no longer marked read). Only text is read: a read receipt of an edit, delete or
 * reaction changes nothing. Only a current member reads: someone who left or was removed
 * keeps their delivery rows from before, but can no longer mark them read.
 *
 * Each delivery row is found by its primary key, message id first. `|| ''` keeps the
 * recipient and status tests off the (recipient_id, status, delivery_id) index: these run
 * with one generic plan (database.ts), and one made on a small table picked that index
 * (every 'sent' row, or every row of the recipient) and kept it as the table grew.
 */
const RECEIPT_SQL = {
  delivered: `UPDATE message_delivery d SET status = 'delivered', delivered_at = v.at
     FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS v(recipient_id, message_id, at), messages m
     WHERE d.message_id = v.message_id AND (d.recipient_id || '') = v.recipient_id AND (d.status || '') = 'sent'
       AND m.message_id = d.message_id
     RETURNING d.recipient_id, d.message_id, m.from_user_id, v.at, m.expires_at`,
  read: `UPDATE message_delivery d SET status = 'read', read_at = v.at, delivered_at = COALESCE(d.delivered_at, v.at)
     FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS v(recipient_id, message_id, at), messages m
     WHERE d.message_id = v.message_id AND (d.recipient_id || '') = v.recipient_id AND d.status <> 'read'
       AND m.message_id = d.message_id AND m.expires_at > v.at AND m.kind = 'text'
       AND EXISTS (SELECT 1 FROM conversation_members cm WHERE cm.conversation_id = m.conversation_id AND cm.user_id = v.recipient_id)
     RETURNING d.recipient_id, d.message_id, m.from_user_id, v.at, m.expires_at`,
};

/** Namespace of the status streams' advisory locks (the first key of the two-key form). */
const STREAM_LOCK_CLASS = 18;

/**
 * The receipt, its status stream rows and (with pushes on) the push cancel, in one
 * statement, so a tick that moved is always in the stream (docs/protocol.md, status stream).
 *
 * Each changed message gets a row in its sender's stream; a read also gets one in the
 * reader's own stream (their other devices clear the badge). Positions come from one
 * identity, taken only while the statement holds a transaction-scoped advisory lock per
 * stream owner, taken in key order (so two batches never wait on each other in a circle):
 * a later transaction writing to the same stream waits for this one to commit before it
 * takes its positions. Within a stream, positions therefore follow commit order, and a
 * reader that saw position p will never see a smaller one appear afterwards. The lock
 * subquery is gated in front of the INSERT (an InitPlan), so every position is taken
 * after every lock.
 *
 * It answers the stream rows themselves, not a join of them with the changed rows: the
 * hot path runs without hash joins (database.ts), and a nested loop over the two lists
 * cost O(n²) (8 of the 13 ms of 200 receipts, bench/explain.ts). A row whose owner is its
 * reader is the reader's own (a read); the other is the sender's: a recipient is never
 * the sender of the message.
 */
function receiptSql(status: "delivered" | "read", push: boolean): string {
  const read = status === "read";
  const owners = read ? `SELECT from_user_id FROM changed UNION SELECT recipient_id FROM changed` : `SELECT from_user_id FROM changed`;
  const rows = read
    ? `SELECT from_user_id AS owner_id, * FROM changed UNION ALL SELECT recipient_id AS owner_id, * FROM changed`
    : `SELECT from_user_id AS owner_id, * FROM changed`;
  return `WITH changed AS (${RECEIPT_SQL[status]}),
   locked AS (
     SELECT pg_advisory_xact_lock(${STREAM_LOCK_CLASS}, k) FROM (
       SELECT DISTINCT hashtext(o) AS k FROM (${owners}) AS x(o) ORDER BY k
     ) AS keys
   ),
   streamed AS (
     INSERT INTO status_stream (owner_id, message_id, status, by_user, at, expires_at)
     SELECT r.owner_id, r.message_id, '${status}', r.recipient_id, r.at, r.expires_at FROM (${rows}) AS r
     WHERE (SELECT count(*) FROM locked) >= 0
     RETURNING owner_id, message_id, by_user, pos
   )${
     push
       ? `, cancelled AS (
     DELETE FROM push_outbox o USING changed c
     WHERE o.message_id = c.message_id AND o.recipient_id = c.recipient_id
   )`
       : ""
   }
   SELECT owner_id, message_id, by_user, pos::text AS pos FROM streamed`;
}

const STATEMENTS = {
  delivered: statement("mark_delivered_v3", receiptSql("delivered", false)),
  read: statement("mark_read_v3", receiptSql("read", false)),
};
const STATEMENTS_PUSH = {
  delivered: statement("mark_delivered_push_v3", receiptSql("delivered", true)),
  read: statement("mark_read_push_v3", receiptSql("read", true)),
};
export const RECEIPT = STATEMENTS;
const receiptStatement = (status: "delivered" | "read", push: boolean) => (push ? STATEMENTS_PUSH : STATEMENTS)[status];

/** One stream row written: a change of `message_id` by `by_user`, at `pos` in `owner_id`'s stream. */
type StreamRow = { owner_id: string; message_id: string; by_user: string; pos: string };

export type ReceiptRequest = { recipient: string; messageIds: string[]; at: Date };

/** Receipts of many devices in one statement (RECEIPT); each caller gets back its own changes. */
export async function markReceipts(
  hot: Knex,
  status: "delivered" | "read",
  push: boolean,
  reqs: ReceiptRequest[],
): Promise<BatchOutcome<StatusChange[]>[]> {
  const recipients = reqs.flatMap((r) => r.messageIds.map(() => r.recipient));
  const ids = reqs.flatMap((r) => r.messageIds);
  const at = reqs.flatMap((r) => r.messageIds.map(() => r.at.toISOString()));
  const rows = await unavailableOnDbError(() => runPrepared<StreamRow>(hot, receiptStatement(status, push), [recipients, ids, at]));
  // By "{reader} {message}": the sender's row (who is told, and where) and the reader's own.
  const changed = new Map<string, { from?: string; pos?: string; ownPos?: string }>();
  for (const r of rows) {
    const key = `${r.by_user} ${r.message_id}`;
    const entry = changed.get(key) ?? {};
    if (r.owner_id === r.by_user) entry.ownPos = r.pos;
    else Object.assign(entry, { from: r.owner_id, pos: r.pos });
    changed.set(key, entry);
  }
  return reqs.map((r) => {
    const mine: StatusChange[] = [];
    for (const id of r.messageIds) {
      const key = `${r.recipient} ${id}`;
      const row = changed.get(key);
      if (row?.from === undefined || row.pos === undefined) continue;
      changed.delete(key); // a receipt listed twice in one batch counts once
      mine.push({ messageId: id, from: row.from, pos: row.pos, ...(row.ownPos ? { ownPos: row.ownPos } : {}) });
    }
    return { ok: true, value: mine };
  });
}
