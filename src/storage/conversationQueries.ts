import type { Knex } from "knex";
import type { ConversationPage, NewGroup, SummaryQuery } from "../messaging/ports";
import { AppError, type ConversationSummary } from "../protocol";
import { MESSAGE_COLUMNS, rowsOf, toMessage, toNumber, type MessageRow } from "./rows";

/**
 * The caller's conversations as `conversation:list` shows them, in one query: members and
 * admins, unread count (text not deleted for everyone) and last unexpired text message,
 * with its current state, most recently active first (ties: conversation id, descending).
 * Groups the caller left or was removed from are listed too (`member` false), seen through
 * the caller's window: `lastSeq`, `unread` and `lastMessage` count only the seqs the caller
 * may see, and such a group shows no members or admins (who came and went after the caller
 * is not theirs to know).
 *
 * A page (`limit`) is cut before the unread counts and last messages are read, so a page
 * costs its own conversations' reads, not the whole list's. `next` is the position of its
 * last conversation when more follow.
 */
export async function conversationSummaries(
  q: Knex | Knex.Transaction,
  userId: string,
  now: Date,
  query: SummaryQuery = {},
): Promise<ConversationPage> {
  const where: string[] = [];
  const whereArgs: Knex.Value[] = [];
  if (query.ids) {
    where.push("conversation_id = ANY(?::uuid[])");
    whereArgs.push(query.ids);
  }
  if (query.withUser !== undefined) {
    // The sorted pair, as conversations.direct_key stores it.
    where.push("direct_key = ?");
    whereArgs.push([userId, query.withUser].sort().join(" "));
  }
  if (query.before) {
    where.push("(active_at, conversation_id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::uuid)");
    whereArgs.push(query.before.activeUs, query.before.id);
  }
  const limit = query.limit === undefined ? "" : `LIMIT ${Number(query.limit) + 1}`;
  const rows = rowsOf<
    MessageRow & {
      id: string;
      conversation_kind: "direct" | "group";
      title: string | null;
      last_seq: string | number;
      is_member: boolean;
      members: string[] | null;
      admins: string[] | null;
      unread: string | number | null;
      active_us: string | number | bigint;
    }
  >(
    await q.raw(
      `WITH mine AS (
         SELECT c.conversation_id, c.kind, c.title, c.direct_key, c.last_seq, COALESCE(c.last_message_at, c.created_at) AS active_at,
           cm.from_seq AS vis_from, c.last_seq AS vis_until, true AS is_member
         FROM conversation_members cm JOIN conversations c ON c.conversation_id = cm.conversation_id
         WHERE cm.user_id = ?
         UNION ALL
         -- As they left it: its title then, and no later activity moving it up their list.
         SELECT c.conversation_id, c.kind, d.title, c.direct_key, c.last_seq, LEAST(COALESCE(c.last_message_at, c.created_at), d.left_at),
           d.from_seq, d.until_seq, false
         FROM conversation_departures d JOIN conversations c ON c.conversation_id = d.conversation_id
         WHERE d.user_id = ?
       ), page AS (
         SELECT * FROM mine ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
         ORDER BY active_at DESC, conversation_id DESC ${limit}
       ), unread AS (
         SELECT m.conversation_id, count(*) AS n FROM message_delivery d
         JOIN messages m ON m.message_id = d.message_id
         JOIN page w ON w.conversation_id = m.conversation_id
         WHERE d.recipient_id = ? AND d.status IN ('sent', 'delivered') AND m.expires_at > ? AND m.kind = 'text'
           AND m.seq BETWEEN w.vis_from AND w.vis_until
           AND m.deleted_at IS NULL
         GROUP BY m.conversation_id
       )
       SELECT c.conversation_id AS id, c.kind AS conversation_kind, c.title, c.vis_until AS last_seq, c.is_member,
         (extract(epoch FROM c.active_at) * 1000000)::bigint AS active_us,
         CASE WHEN c.is_member THEN (SELECT array_agg(x.user_id ORDER BY x.user_id) FROM conversation_members x
           WHERE x.conversation_id = c.conversation_id) END AS members,
         CASE WHEN c.is_member AND c.kind = 'group' THEN (SELECT array_agg(x.user_id ORDER BY x.user_id)
           FROM conversation_members x WHERE x.conversation_id = c.conversation_id AND x.role = 'admin') END AS admins,
         u.n AS unread, ${MESSAGE_COLUMNS}
       FROM page c
       LEFT JOIN unread u ON u.conversation_id = c.conversation_id
       LEFT JOIN LATERAL (
         SELECT * FROM messages lm WHERE lm.conversation_id = c.conversation_id AND lm.expires_at > ? AND lm.kind = 'text'
           AND lm.seq BETWEEN c.vis_from AND c.vis_until
         ORDER BY lm.seq DESC LIMIT 1
       ) m ON true
       ORDER BY c.active_at DESC, c.conversation_id DESC`,
      [userId, userId, ...whereArgs, userId, now, now],
    ),
  );
  const more = query.limit !== undefined && rows.length > query.limit;
  const shown = more ? rows.slice(0, query.limit) : rows;
  const last = shown[shown.length - 1];
  return {
    conversations: shown.map((r) => ({
      id: r.id,
      kind: r.conversation_kind,
      title: r.title,
      members: r.members ?? [],
      admins: r.admins ?? [],
      member: r.is_member,
      lastSeq: toNumber(r.last_seq),
      unread: toNumber(r.unread),
      lastMessage: r.message_id ? toMessage(r) : null,
    })),
    next: more && last ? { activeUs: String(last.active_us), id: last.id } : null,
  };
}

/**
 * A group, its members (the creator its admin) and their directory entries, in one
 * transaction. With `createdPerHour`, a creator who already made that many groups in the
 * hour before `at` is refused (RATE_LIMITED) and nothing is stored; a transaction-scoped
 * advisory lock on the creator makes the count and the insert one step, whichever node
 * the creator's requests land on.
 */
export function insertGroup(db: Knex, req: NewGroup): Promise<ConversationSummary> {
  return db.transaction(async (trx) => {
    if (req.createdPerHour !== undefined) {
      await trx.raw(`SELECT pg_advisory_xact_lock(hashtext('ticks:group-create'), hashtext(?))`, [req.creator]);
      const [row] = rowsOf<{ n: string | number }>(
        await trx.raw(
          `SELECT count(*) AS n FROM conversations WHERE created_by = ? AND kind = 'group' AND created_at > ?`,
          [req.creator, new Date(req.at.getTime() - HOUR_MS)],
        ),
      );
      if (toNumber(row?.n) >= req.createdPerHour) {
        throw new AppError("RATE_LIMITED", `at most ${req.createdPerHour} new groups an hour (GROUP_CREATE_PER_HOUR)`);
      }
    }
    const all = [...new Set([req.creator, ...req.members])];
    await trx.raw(`INSERT INTO users (user_id) SELECT * FROM unnest(?::text[]) ON CONFLICT (user_id) DO NOTHING`, [all]);
    await trx.raw(
      `INSERT INTO conversations (conversation_id, kind, title, created_at, created_by) VALUES (?, 'group', ?, ?, ?)`,
      [req.id, req.title, req.at, req.creator],
    );
    await trx.raw(
      `INSERT INTO conversation_members (conversation_id, user_id, joined_at, role)
       SELECT ?, u, ?, CASE WHEN u = ? THEN 'admin' ELSE 'member' END FROM unnest(?::text[]) AS u`,
      [req.id, req.at, req.creator, all],
    );
    const { conversations } = await conversationSummaries(trx, req.creator, req.at, { ids: [req.id] });
    return conversations[0]!;
  });
}

const HOUR_MS = 3_600_000;
