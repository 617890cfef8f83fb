import type { Knex } from "knex";
import type { NewGroup } from "../messaging/ports";
import type { ConversationSummary } from "../protocol";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";

/**
 * The caller's conversations as `conversation:list` shows them (or just `only`), in one
 * query: members, unread count (text not deleted for everyone) and last unexpired text message, with its
 * current state, most recently active first.
 */
export async function conversationSummaries(
  q: Knex | Knex.Transaction,
  userId: string,
  now: Date,
  only?: string,
): Promise<ConversationSummary[]> {
  const rows = rowsOf<
    MessageRow & {
      id: string;
      conversation_kind: "direct" | "group";
      title: string | null;
      last_seq: string | number;
      members: string[];
      unread: string | number | null;
    }
  >(
    await q.raw(
      `WITH mine AS (
         SELECT c.* FROM conversation_members cm JOIN conversations c ON c.conversation_id = cm.conversation_id
         WHERE cm.user_id = ? ${only ? "AND c.conversation_id = ?" : ""}
       ), unread AS (
         SELECT m.conversation_id, count(*) AS n FROM message_delivery d
         JOIN messages m ON m.message_id = d.message_id
         WHERE d.recipient_id = ? AND d.status IN ('sent', 'delivered') AND m.expires_at > ? AND m.kind = 'text'
           AND m.deleted_at IS NULL
         GROUP BY m.conversation_id
       )
       SELECT c.conversation_id AS id, c.kind AS conversation_kind, c.title, c.last_seq,
         (SELECT array_agg(x.user_id ORDER BY x.user_id) FROM conversation_members x
           WHERE x.conversation_id = c.conversation_id) AS members,
         u.n AS unread, ${MESSAGE_COLUMNS}
       FROM mine c
       LEFT JOIN unread u ON u.conversation_id = c.conversation_id
       LEFT JOIN LATERAL (
         SELECT * FROM messages lm WHERE lm.conversation_id = c.conversation_id AND lm.expires_at > ? AND lm.kind = 'text'
         ORDER BY lm.seq DESC LIMIT 1
       ) m ON true
       ORDER BY COALESCE(c.last_message_at, c.created_at) DESC, c.conversation_id`,
      only ? [userId, only, userId, now, now] : [userId, userId, now, now],
    ),
  );
  return rows.map((r) => ({
    id: r.id,
    kind: r.conversation_kind,
    title: r.title,
    members: r.members,
    lastSeq: toNumber(r.last_seq),
    unread: toNumber(r.unread),
    lastMessage: r.message_id ? toMessage(r) : null,
  }));
}

/** A group, its members and their directory entries, in one transaction. */
export function insertGroup(db: Knex, req: NewGroup): Promise<ConversationSummary> {
  return db.transaction(async (trx) => {
    const all = [...new Set([req.creator, ...req.members])];
    await trx.raw(`INSERT INTO users (user_id) SELECT * FROM unnest(?::text[]) ON CONFLICT (user_id) DO NOTHING`, [all]);
    await trx.raw(
      `INSERT INTO conversations (conversation_id, kind, title, created_at, created_by) VALUES (?, 'group', ?, ?, ?)`,
      [req.id, req.title, req.at, req.creator],
    );
    await trx.raw(
      `INSERT INTO conversation_members (conversation_id, user_id, joined_at)
       SELECT ?, u, ? FROM unnest(?::text[]) AS u`,
      [req.id, req.at, all],
    );
    const [summary] = await conversationSummaries(trx, req.creator, req.at, req.id);
    return summary!;
  });
}
