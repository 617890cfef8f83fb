import type { Knex } from "knex";
import type { HistoryResult, Message } from "../protocol";
import type { HistoryQuery } from "../messaging/ports";
import type { Visibility } from "../messaging/groupPorts";
import { runPrepared, statement, type Statement } from "./prepared";
import { MESSAGE_COLUMNS, rowsOf, toMessage, type MessageRow } from "./rows";

/** The reads of the message log behind SqlMessageStore; each runs as one statement. */

/** A page of the recipient's backlog: every connect reads at least one (usually empty) page, twice. */
export const BACKLOG = statement(
  "backlog",
  `SELECT ${MESSAGE_COLUMNS} FROM message_delivery d
   JOIN messages m ON m.message_id = d.message_id
   WHERE d.recipient_id = $1 AND d.status = 'sent' AND m.expires_at > $2
   ORDER BY d.delivery_id LIMIT $3`,
);

export async function undelivered(
  db: Knex,
  recipients: string[],
  createdBefore: Date,
  now: Date,
  limit: number,
  createdAfter?: Date,
): Promise<{ recipient: string; message: Message }[]> {
  const rows = rowsOf<MessageRow & { recipient_id: string }>(
    await db.raw(
      `SELECT d.recipient_id, ${MESSAGE_COLUMNS} FROM message_delivery d
       JOIN messages m ON m.message_id = d.message_id
       WHERE d.recipient_id = ANY(?::text[]) AND d.status = 'sent' AND m.created_at <= ? AND m.expires_at > ?
         AND m.created_at > ?
       ORDER BY d.delivery_id LIMIT ?`,
      [recipients, createdBefore, now, createdAfter ?? new Date(0), limit],
    ),
  );
  return rows.map((r) => ({ recipient: r.recipient_id, message: toMessage(r) }));
}

export async function backlogPage(hot: Knex, recipient: string, now: Date, limit: number): Promise<Message[]> {
  const rows = await runPrepared<MessageRow>(hot, BACKLOG, [recipient, now.toISOString(), limit]);
  return rows.map(toMessage);
}

/**
 * A history page: one named statement per shape of the query (which bounds it has, which
 * direction), so each connection plans it once. messages is partitioned by day and a page
 * by conversation visits every partition: planning it on each call cost more than running it
 * (docs/benchmarks.md, "Reads over day partitions").
 */
const HISTORY = new Map<string, Statement>();

export async function historyPage(db: Knex, conversationId: string, query: HistoryQuery, now: Date): Promise<HistoryResult> {
  const where = ["m.conversation_id = $1", "m.expires_at > $2"];
  const values: unknown[] = [conversationId, now.toISOString()];
  const bound = (sql: string, value: number) => {
    values.push(value);
    where.push(`${sql} $${values.length}`);
  };
  // The caller's window: a later member sees from the entry that added them, a former one
  // up to the entry that removed them.
  if (query.fromSeq !== undefined && query.fromSeq > 0) bound("m.seq >=", query.fromSeq);
  if (query.untilSeq !== undefined) bound("m.seq <=", query.untilSeq);
  if (query.afterSeq !== undefined) bound("m.seq >", query.afterSeq);
  if (query.beforeSeq !== undefined) bound("m.seq <", query.beforeSeq);
  // With afterSeq the page starts right after it (catching up); otherwise it ends at
  // beforeSeq or the newest message (scrolling back). Either way: seq ascending.
  const forward = query.afterSeq !== undefined;
  values.push(query.limit + 1);
  const text = `SELECT ${MESSAGE_COLUMNS} FROM messages m WHERE ${where.join(" AND ")}
       ORDER BY m.seq ${forward ? "ASC" : "DESC"} LIMIT $${values.length}`;
  let stmt = HISTORY.get(text);
  if (!stmt) {
    stmt = statement(`history_${HISTORY.size}`, text);
    HISTORY.set(text, stmt);
  }
  const rows = await runPrepared<MessageRow>(db, stmt, values);
  const hasMore = rows.length > query.limit;
  const page = rows.slice(0, query.limit).map(toMessage);
  return { messages: forward ? page : page.reverse(), hasMore };
}

/** Which seqs of the conversation the user may see (see Visibility). */
export async function visibilityOf(db: Knex, conversationId: string, userId: string): Promise<Visibility> {
  const [row] = rowsOf<{ member_from: string | number | null; left_from: string | number | null; until_seq: string | number | null }>(
    await db.raw(
      `SELECT
         (SELECT from_seq FROM conversation_members WHERE conversation_id = c.conversation_id AND user_id = ?) AS member_from,
         d.from_seq AS left_from, d.until_seq
       FROM conversations c
       LEFT JOIN conversation_departures d ON d.conversation_id = c.conversation_id AND d.user_id = ?
       WHERE c.conversation_id = ?`,
      [userId, userId, conversationId],
    ),
  );
  if (!row) return { state: "not_found" };
  if (row.member_from !== null) return { state: "member", fromSeq: Number(row.member_from) };
  if (row.until_seq !== null) return { state: "former", fromSeq: Number(row.left_from), untilSeq: Number(row.until_seq) };
  return { state: "stranger" };
}

/** Whether any of these messages lies in a conversation the user left or was removed from. */
export async function departedFrom(db: Knex, userId: string, messageIds: string[]): Promise<boolean> {
  const rows = rowsOf<{ hit: number }>(
    await db.raw(
      `SELECT 1 AS hit FROM messages m
       JOIN conversation_departures d ON d.conversation_id = m.conversation_id AND d.user_id = ?
       WHERE m.message_id = ANY(?::uuid[]) LIMIT 1`,
      [userId, messageIds],
    ),
  );
  return rows.length > 0;
}

export async function membersOf(db: Knex, conversationId: string): Promise<string[] | null> {
  const rows = rowsOf<{ user_id: string | null }>(
    await db.raw(
      `SELECT cm.user_id FROM conversations c
       LEFT JOIN conversation_members cm ON cm.conversation_id = c.conversation_id
       WHERE c.conversation_id = ? ORDER BY cm.user_id`,
      [conversationId],
    ),
  );
  if (rows.length === 0) return null;
  return rows.flatMap((r) => (r.user_id ? [r.user_id] : []));
}
