import type { Knex } from "knex";
import type { HistoryResult, Message } from "../protocol";
import type { HistoryQuery } from "../messaging/ports";
import type { Visibility } from "../messaging/groupPorts";
import { runPrepared, statement, type Statement } from "./prepared";
import { MESSAGE_COLUMNS, rowsOf, toMessage, type MessageRow } from "./rows";

/** The reads of the message log behind SqlMessageStore; each runs as one statement. */

/**
 * What a crowd of connects needs from the database, in one statement: the first backlog
 * page of each recipient, and the users of this batch not yet recorded (`$4`; usually none
 * are new). Every connect records its user and reads at least one (usually empty) page; a
 * crowd connecting in one tick (a restart's reconnect storm) shares one round trip. Each
 * recipient's rows come in its own delivery order, at most `$3` of them; `ord` says which
 * recipient of `$1` a row is for. The INSERT runs whether or not the SELECT reads its output.
 */
export const BACKLOG_PAGES = statement(
  "backlog_pages",
  `WITH new_users AS (INSERT INTO users (user_id) SELECT unnest($4::text[]) ON CONFLICT (user_id) DO NOTHING)
   SELECT r.ord, p.* FROM unnest($1::text[]) WITH ORDINALITY AS r(recipient_id, ord)
   CROSS JOIN LATERAL (
     SELECT d.delivery_id, ${MESSAGE_COLUMNS} FROM message_delivery d
     JOIN messages m ON m.message_id = d.message_id
     WHERE d.recipient_id = r.recipient_id AND d.status = 'sent' AND m.expires_at > $2
     ORDER BY d.delivery_id LIMIT $3
   ) p
   ORDER BY r.ord, p.delivery_id`,
);

export type BacklogRequest = { recipient: string; now: Date; limit: number };

/**
 * One page for each request, in the requests' order, and `newUsers` recorded (sorted by the
 * caller: two batches inserting the same users take their index locks in one order).
 * Requests of one recipient share its page; the statement reads the largest limit asked for
 * at the latest `now`, and each request gets the first `limit` rows of it (the same rows a
 * page of its own would hold).
 */
export async function backlogPages(hot: Knex, requests: BacklogRequest[], newUsers: string[] = []): Promise<Message[][]> {
  const recipients = [...new Set(requests.map((r) => r.recipient))];
  const limit = Math.max(...requests.map((r) => r.limit));
  const now = new Date(Math.max(...requests.map((r) => r.now.getTime())));
  const rows = await runPrepared<MessageRow & { ord: string | number }>(hot, BACKLOG_PAGES, [recipients, now.toISOString(), limit, newUsers]);
  const pages = new Map<string, Message[]>(recipients.map((r) => [r, []]));
  for (const row of rows) pages.get(recipients[Number(row.ord) - 1]!)!.push(toMessage(row));
  return requests.map((r) => pages.get(r.recipient)!.slice(0, r.limit));
}

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
