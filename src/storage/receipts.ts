import type { Knex } from "knex";
import type { StatusChange } from "../messaging/ports";
import type { BatchOutcome } from "./GroupCommit";
import { runPrepared, statement } from "./prepared";
import { unavailableOnDbError } from "./unavailable";

/**
 * Receipts of many devices in one UPDATE. Only rows of the caller as recipient move, and
 * only forward: sent → delivered → read (read also sets delivered_at; an expired message
 * is no longer marked read). Only text is read: a read receipt of an edit, delete or
 * reaction changes nothing.
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
     RETURNING d.recipient_id, d.message_id, m.from_user_id`,
  read: `UPDATE message_delivery d SET status = 'read', read_at = v.at, delivered_at = COALESCE(d.delivered_at, v.at)
     FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) AS v(recipient_id, message_id, at), messages m
     WHERE d.message_id = v.message_id AND (d.recipient_id || '') = v.recipient_id AND d.status <> 'read'
       AND m.message_id = d.message_id AND m.expires_at > v.at AND m.kind = 'text'
     RETURNING d.recipient_id, d.message_id, m.from_user_id`,
};

/** With pushes on, a confirmation cancels the recipient's pending push in the same statement. */
const withPushCancel = (sql: string) => `WITH changed AS (${sql}), cancelled AS (
     DELETE FROM push_outbox o USING changed c
     WHERE o.message_id = c.message_id AND o.recipient_id = c.recipient_id
   )
   SELECT recipient_id, message_id, from_user_id FROM changed`;

export const RECEIPT = {
  delivered: statement("mark_delivered", RECEIPT_SQL.delivered),
  read: statement("mark_read", RECEIPT_SQL.read),
};
const RECEIPT_PUSH = {
  delivered: statement("mark_delivered_push", withPushCancel(RECEIPT_SQL.delivered)),
  read: statement("mark_read_push", withPushCancel(RECEIPT_SQL.read)),
};
const receiptStatement = (status: "delivered" | "read", push: boolean) => (push ? RECEIPT_PUSH : RECEIPT)[status];

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
  const rows = await unavailableOnDbError(() =>
    runPrepared<{ recipient_id: string; message_id: string; from_user_id: string }>(hot, receiptStatement(status, push), [
      recipients,
      ids,
      at,
    ]),
  );
  const changed = new Map(rows.map((r) => [`${r.recipient_id} ${r.message_id}`, r.from_user_id]));
  return reqs.map((r) => {
    const mine: StatusChange[] = [];
    for (const id of r.messageIds) {
      const key = `${r.recipient} ${id}`;
      const from = changed.get(key);
      if (from === undefined) continue;
      changed.delete(key); // a receipt listed twice in one batch counts once
      mine.push({ messageId: id, from });
    }
    return { ok: true, value: mine };
  });
}
