import type { Knex } from "knex";
import type { AppendRequest } from "../../messaging/ports";
import { runPrepared, statement } from "../prepared";
import { MESSAGE_COLUMNS, rowsOf, type MessageRow } from "../rows";
import type { Conversations, TargetRow } from "./batchPlan";

/**
 * Stored messages for these exact (sender, clientMsgId) pairs: one probe of
 * message_idempotency's key per pair, then one of the message's own partition.
 */
export const FIND_STORED = statement(
  "find_stored",
  `SELECT ${MESSAGE_COLUMNS} FROM unnest($1::text[], $2::text[]) AS p(sender, client_msg_id)
   JOIN message_idempotency k ON k.from_user_id = p.sender AND k.client_msg_id = p.client_msg_id
   JOIN messages m ON m.message_id = k.message_id`,
);

/**
 * After a lost duplicate race: these pairs' idempotency keys whose message is gone (its
 * partition was dropped by hand, or dropped before the key's own expiry was swept) are
 * forgotten, so the retry is stored anew, as after expiry. Its own statement, so it sees
 * every message committed before it: a key whose message a concurrent retry just stored
 * stays.
 */
export async function forgetGoneOriginals(db: Knex, reqs: { from: string; clientMsgId: string }[]): Promise<void> {
  await db.raw(
    `DELETE FROM message_idempotency k USING unnest(?::text[], ?::text[]) AS p(sender, client_msg_id)
     WHERE k.from_user_id = p.sender AND k.client_msg_id = p.client_msg_id
       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.message_id = k.message_id)`,
    [reqs.map((r) => r.from), reqs.map((r) => r.clientMsgId)],
  );
}

export function findStored(db: Knex, reqs: AppendRequest[]): Promise<MessageRow[]> {
  return runPrepared<MessageRow>(db, FIND_STORED, [reqs.map((r) => r.from), reqs.map((r) => r.clientMsgId)]);
}

/**
 * The given conversations with their members; with entries in the batch, also the messages
 * they act on and those messages' conversations, in the same round trip.
 */
export async function loadConversations(
  db: Knex,
  ids: string[],
  refIds: string[],
  /** The senders of the batch's entries (whose departures matter). */
  actors: string[] = [],
): Promise<{ conversations: Conversations; targets: Map<string, TargetRow> }> {
  const conversations: Conversations = new Map();
  const targets = new Map<string, TargetRow>();
  // members_version: the write checks it under the conversation's lock (a removal between
  // these reads and the write makes the batch run again, judged on the new members).
  const members = `SELECT c.conversation_id, c.kind, c.members_version::text AS version, cm.user_id, false AS departed,
       NULL::jsonb AS target FROM conversations c
       LEFT JOIN conversation_members cm ON cm.conversation_id = c.conversation_id`;
  const rows = rowsOf<{
    conversation_id: string;
    kind: string | null;
    version: string | null;
    user_id: string | null;
    departed: boolean;
    target: TargetRow | null;
  }>(
    refIds.length === 0
      ? await db.raw(`${members} WHERE c.conversation_id = ANY(?::uuid[])`, [[...new Set(ids)]])
      : await db.raw(
          // Rows of two shapes in one answer: members (target NULL), then one per target.
          // A deleted target brings its first delete entry along, for a repeated delete.
          `WITH t AS (
             SELECT m.message_id, m.conversation_id, m.from_user_id, m.kind, m.created_at, m.expires_at, m.deleted_at,
               m.xmin::text AS xmin,
               CASE WHEN m.deleted_at IS NOT NULL THEN (
                 SELECT to_jsonb(e) FROM messages e
                 WHERE e.ref_id = m.message_id AND e.ref_id IS NOT NULL AND e.kind = 'delete' ORDER BY e.seq LIMIT 1
               ) END AS delete_entry
             FROM messages m WHERE m.message_id = ANY(?::uuid[])
           )
           ${members}
           WHERE c.conversation_id IN (SELECT unnest(?::uuid[]) UNION SELECT conversation_id FROM t)
           UNION ALL
           -- Who left the targets' conversations: their entries are FORBIDDEN, not NOT_FOUND.
           SELECT d.conversation_id, NULL, NULL, d.user_id, true, NULL FROM conversation_departures d
           WHERE d.conversation_id IN (SELECT conversation_id FROM t) AND d.user_id = ANY(?::text[])
           UNION ALL
           SELECT t.conversation_id, NULL, NULL, NULL, false, to_jsonb(t) FROM t`,
          [[...new Set(refIds)], [...new Set(ids)], [...new Set(actors)]],
        ),
  );
  for (const r of rows) {
    if (r.target) {
      targets.set(r.target.message_id, r.target);
      continue;
    }
    const entry = conversations.get(r.conversation_id) ?? { kind: "", members: [], version: 0, departed: [] };
    if (r.kind !== null) {
      entry.kind = r.kind;
      entry.version = Number(r.version ?? 0);
    }
    if (r.user_id) (r.departed ? entry.departed! : entry.members).push(r.user_id);
    conversations.set(r.conversation_id, entry);
  }
  return { conversations, targets };
}
