import { messageIdAt } from "../../messaging/messageIds";
import { statement } from "../prepared";
import type { BatchRow, TargetPlan } from "./batchPlan";
import { ACTED, CHECKS, CREATED, PUSHES, SENT } from "./writeParts";

/**
 * The write. In order of the CTEs:
 * - `v`: the batch's messages and entries, in request order; `t`: per acted-on message,
 *   what the batch's entries do to it (folded by the caller) and the row version the
 *   reads saw.
 * - `stored`: retries of messages stored earlier, one probe of message_idempotency's key
 *   per request; they are not written again, and the caller answers them with the
 *   original, which it reads then by the same key (write.ts, reads.ts: findStored). Not joined here: a join reaches `messages`
 *   by a key known only row by row, so every execution would set up a scan of every day
 *   partition, about 0.015 ms each (docs/benchmarks.md, "A slow day"), for the rare retry.
 * - `current`/`unchanged`: locks the acted-on messages and checks that none changed or went
 *   since the reads; `seen`/`membership`: locks the groups written to and checks that their
 *   members did not change since the reads (members_version, moved by every add, remove
 *   and leave under the same lock). FOR UPDATE returns the row as last committed, so a
 *   removal committed after this statement's snapshot is seen here, and the batch is run
 *   again rather than delivered by the snapshot's stale member list. Otherwise nothing below writes anything (the caller redoes the batch):
 *   an entry is never judged on a stale state, and a delete never misses an edit
 *   committed by another node after this statement's snapshot.
 * - `found`: what is to be written, each with its conversation if it exists (a direct one
 *   found by its key). `fresh`/`created`/`members`/`directory` (writeParts.ts, CREATED):
 *   the direct conversations that do not exist yet are created here, with their members,
 *   directory entries and seq counter; `routed`: what is written, each with its
 *   conversation; a first message whose pair another batch created after this
 *   statement's snapshot (ON CONFLICT) is left out, and the caller writes it again once
 *   createDirect has found that row (appendBatch.ts).
 * - lock the batch's existing conversations in id order (concurrent batches cannot
 *   deadlock; the creations come first, in key order), move each seq counter by its number
 *   of messages, number the messages in request order from there, without joining the
 *   batch to its conversations (a created
 *   conversation's from 1), insert them, then their delivery rows in seq order (so
 *   delivery_id follows seq within a conversation: the backlog's order; a created
 *   conversation's recipient is the row's, its members not being visible to this
 *   statement); `keyed`: each message's
 *   (sender, clientMsgId) in message_idempotency, whose primary key is what makes a
 *   concurrent retry fail here.
 * - `sent`: uploads carried for the first time are marked sent (media.sent_at).
 * - `acted`: the targets' new state (content, editedAt, reactions; a delete empties them
 *   and drops the media);
 *   `erased`: a delete empties the content of the entries already stored for its message.
 * Returns the retries (by `ord`, the request's position), each new message's
 * conversation and seq, and each of its delivery rows' recipient. A unique violation (a
 * concurrent retry stored the same clientMsgId first) undoes the whole statement, seq
 * included.
 *
 * Runs as a named statement with one generic plan (database.ts: createHotPathDatabase):
 * every table is reached by key from the batch's rows. Checked with bench/investigations/explain.ts.
 */
/**
 * `plain`: a batch of text messages without media that writes to no group (nothing to
 * judge, no member list to check again), the usual batch: the statement without `t`,
 * `current`, `seen`, `membership`, `unchanged`, `sent`, `acted` and `erased`. Empty as they
 * are for such a batch, their scans and updates of every partition of messages still cost
 * their executor set-up in each execution: ~0.2 ms of the database's CPU per statement,
 * measured here against 0.45 ms for all the rest of a one-message batch (docs/benchmarks.md,
 * "Server and database CPU per message"). Its parameters are $1–$11 (writeValues), then
 * the new conversations' ids, then the push delay; the full statement's ids and delay
 * come after its $12–$22.
 */
const writeText = (plain: boolean, push: boolean): string => {
  const ids = plain ? "$12" : "$23";
  const delay = plain ? "$13" : "$24";
  return `WITH v AS (
     SELECT *${plain ? ", NULL::uuid AS ref_id, NULL::jsonb AS media" : ""}
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[],
       $8::timestamptz[], $9::timestamptz[], $10::bool[], $11::text[], ${ids}::uuid[]${plain ? "" : ", $12::uuid[], $22::jsonb[]"})
       WITH ORDINALITY AS v(id, sender, recipient, given_id, direct_key, client_msg_id, content, created_at, expires_at,
         accept, kind, new_id${plain ? "" : ", ref_id, media"}, ord)
   ), stored AS (
     SELECT v.ord FROM v
     JOIN message_idempotency k ON k.from_user_id = v.sender AND k.client_msg_id = v.client_msg_id
   )${plain ? "" : CHECKS}, found AS (
     SELECT v.*, coalesce(v.given_id, d.conversation_id) AS found_id
     FROM v LEFT JOIN conversations d ON d.direct_key = v.direct_key
     WHERE v.accept AND NOT EXISTS (SELECT 1 FROM stored s WHERE s.ord = v.ord)${plain ? "" : "\n       AND (SELECT ok FROM unchanged)"}
   )${CREATED}, routed AS (
     -- A key's rows all carry the id \`created\` inserted it with. The IN under OR stays a
     -- hashed subplan: a join would be a nested loop, rows × created conversations.
     SELECT f.*, coalesce(f.found_id, f.new_id) AS conversation_id, f.found_id IS NULL AS is_new
     FROM found f
     WHERE f.found_id IS NOT NULL OR f.new_id IN (SELECT conversation_id FROM created)
   ), counts AS (
     -- Only text moves a conversation up the list; every kind takes a seq. A conversation
     -- created above has its counter set already, and no row to lock (it is not visible here).
     SELECT conversation_id, count(*)::int AS n, max(created_at) FILTER (WHERE kind = 'text') AS text_at
     FROM routed WHERE NOT is_new GROUP BY conversation_id
   ), locked AS (
     -- Each count probes its row by key. Two CTEs joined would be a nested loop (hash and
     -- merge joins are off on these connections): counts × conversations, then batch rows ×
     -- conversations in numbered, quadratic in a batch spread over many conversations.
     SELECT c.conversation_id, k.n, k.text_at FROM counts k
     JOIN conversations c ON c.conversation_id = k.conversation_id
     ORDER BY c.conversation_id FOR UPDATE OF c
   ), bumped AS (
     UPDATE conversations c SET last_seq = c.last_seq + l.n,
       last_message_at = COALESCE(l.text_at, c.last_message_at)
     FROM locked l
     WHERE c.conversation_id = l.conversation_id
     RETURNING c.conversation_id, c.last_seq - l.n AS base
   ), numbered AS (
     -- Each row's seq without a join: the batch's rows and the counters' bases in one sort
     -- by conversation, the base spread over its conversation's rows by a window. A row of
     -- an existing conversation that was not bumped (gone meanwhile) is left out.
     SELECT * FROM (
       SELECT u.*,
         coalesce(max(u.base) OVER (PARTITION BY u.cid), 0)
           + count(u.ord) OVER (PARTITION BY u.cid ORDER BY u.ord ROWS UNBOUNDED PRECEDING) AS seq,
         bool_or(u.base IS NOT NULL) OVER (PARTITION BY u.cid) AS counted
       FROM (
         SELECT r.*, r.conversation_id AS cid, NULL::bigint AS base FROM routed r
         UNION ALL
         SELECT r.*, b.conversation_id, b.base FROM bumped b LEFT JOIN routed r ON false
       ) u
     ) w
     WHERE w.ord IS NOT NULL AND (w.is_new OR w.counted)
   ), inserted AS (
     INSERT INTO messages (message_id, conversation_id, seq, from_user_id, to_user_id, client_msg_id, content,
       created_at, expires_at, kind, ref_id, media_id, media)
     SELECT id, conversation_id, seq, sender, recipient, client_msg_id, content, created_at, expires_at, kind, ref_id,
       (media->>'mediaId')::uuid, media
     FROM numbered
     RETURNING message_id, conversation_id, seq, from_user_id, media_id, created_at
   ), keyed AS (
     -- The global idempotency key (messages is partitioned: its own unique keys are per partition).
     INSERT INTO message_idempotency (from_user_id, client_msg_id, message_id, expires_at)
     SELECT sender, client_msg_id, id, expires_at FROM numbered
   )${plain ? "" : SENT}, delivered AS (
     INSERT INTO message_delivery (message_id, recipient_id, status)
     SELECT message_id, recipient_id, 'sent' FROM (
       SELECT i.message_id, cm.user_id AS recipient_id, i.conversation_id, i.seq FROM inserted i
       JOIN conversation_members cm ON cm.conversation_id = i.conversation_id AND cm.user_id <> i.from_user_id
       UNION ALL
       -- A conversation created above: its members are not visible here; the peer is the row's recipient.
       SELECT n.id, n.recipient, n.conversation_id, n.seq FROM numbered n WHERE n.is_new
     ) r
     ORDER BY conversation_id, seq, recipient_id
     RETURNING message_id, recipient_id
   )${plain ? "" : ACTED}${push ? PUSHES.replace("$delay", delay) : ""}
   SELECT s.ord, NULL::uuid AS message_id, NULL::uuid AS conversation_id, NULL::bigint AS seq, NULL::text AS recipient
   FROM stored s
   UNION ALL
   SELECT NULL, message_id, conversation_id, seq, NULL FROM inserted
   UNION ALL
   SELECT NULL, message_id, NULL, NULL, recipient_id FROM delivered`;
};

export const WRITE = statement("append", writeText(false, false));
export const WRITE_PUSH = statement("append_push", writeText(false, true));
/** A plain batch's statements (writeText), with `plainValues`. */
export const WRITE_PLAIN = statement("append_plain", writeText(true, false));
export const WRITE_PLAIN_PUSH = statement("append_plain_push", writeText(true, true));

/** One of: a retry (`ord` set), a new message (`seq` set), or one of its recipients. */
export type WriteRow = {
  ord: string | number | null;
  /** Null on a retry's row. */
  message_id: string;
  conversation_id: string | null;
  seq: string | number | null;
  recipient: string | null;
};

/** $1–$11: the batch's rows (every statement). */
function rowValues(rows: BatchRow[]): unknown[] {
  const col = <T>(pick: (r: BatchRow) => T) => rows.map(pick);
  return [
    col((r) => r.req.id),
    col((r) => r.req.from),
    col((r) => r.to),
    col((r) => r.conversationId),
    col((r) => r.directKey),
    col((r) => r.req.clientMsgId),
    col((r) => r.content),
    col((r) => r.req.createdAt.toISOString()),
    col((r) => r.expiresAt.toISOString()),
    col((r) => r.accept),
    col((r) => r.req.kind),
  ];
}

/**
 * Per row, the id its direct conversation gets if the statement creates it (writeParts.ts:
 * CREATED): one per key, a UUIDv7 stamped with the key's first message's createdAt (its
 * created_at), made as message ids are. Drawn for every direct row, since only the statement
 * knows which conversations are missing: 16 pooled bytes each.
 */
function newConversationIds(rows: BatchRow[]): (string | null)[] {
  const ids = new Map<string, string>();
  return rows.map((r) => {
    if (r.directKey === null) return null;
    let id = ids.get(r.directKey);
    if (id === undefined) ids.set(r.directKey, (id = messageIdAt(r.req.createdAt)));
    return id;
  });
}

/** The plain statements' parameters: $1–$11, then $12 the new conversations' ids. */
export function plainValues(rows: BatchRow[]): unknown[] {
  return [...rowValues(rows), newConversationIds(rows)];
}

/** The full statements' parameters: $1–$11, the entries' and groups' $12–$22, then $23 the new conversations' ids. */
export function writeValues(rows: BatchRow[], plans: TargetPlan[] = [], versions: Map<string, number> = new Map()): unknown[] {
  const plan = <T>(pick: (p: TargetPlan) => T) => plans.map(pick);
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return [
    ...rowValues(rows),
    rows.map((r) => r.refId),
    plan((p) => p.row.message_id),
    plan((p) => p.row.xmin),
    plan((p) => p.content),
    plan((p) => iso(p.editedAt)),
    plan((p) => iso(p.deletedAt)),
    plan((p) => JSON.stringify(p.patch)),
    plans.filter((p) => p.deletedAt !== null).map((p) => p.row.message_id),
    [...versions.keys()],
    [...versions.values()],
    rows.map((r) => (r.req.kind === "text" && r.req.media ? JSON.stringify(r.req.media) : null)),
    newConversationIds(rows),
  ];
}
