import { statement } from "../prepared";
import type { MessageRow } from "../rows";
import type { BatchRow, TargetPlan } from "./batchPlan";

/**
 * The write. In order of the CTEs:
 * - `v`: the batch's messages and entries, in request order; `t`: per acted-on message,
 *   what the batch's entries do to it (folded by the caller) and the row version the
 *   reads saw.
 * - `stored`: retries of messages stored earlier, one probe of message_idempotency's key
 *   and one of the message's partition per request; they are answered with the original
 *   and not written again.
 * - `current`/`unchanged`: locks the acted-on messages and checks that none changed or went
 *   since the reads; `seen`/`membership`: locks the groups written to and checks that their
 *   members did not change since the reads (members_version, moved by every add, remove
 *   and leave under the same lock). FOR UPDATE returns the row as last committed, so a
 *   removal committed after this statement's snapshot is seen here, and the batch is run
 *   again rather than delivered by the snapshot's stale member list. Otherwise nothing below writes anything (the caller redoes the batch):
 *   an entry is never judged on a stale state, and a delete never misses an edit
 *   committed by another node after this statement's snapshot.
 * - `routed`: what is written, each with its conversation (a direct one found by its key;
 *   a direct message whose conversation does not exist yet is left out, and created by
 *   the caller).
 * - lock the batch's conversations in id order (concurrent batches cannot deadlock), move
 *   each seq counter by its number of messages, number the messages in request order
 *   from there, insert them, then their delivery rows in seq order (so delivery_id follows
 *   seq within a conversation: the backlog's order); `keyed`: each message's
 *   (sender, clientMsgId) in message_idempotency, whose primary key is what makes a
 *   concurrent retry fail here.
 * - `sent`: uploads carried for the first time are marked sent (media.sent_at).
 * - `acted`: the targets' new state (content, editedAt, reactions; a delete empties them
 *   and drops the media);
 *   `erased`: a delete empties the content of the entries already stored for its message.
 * Returns the stored originals (with `ord`, the request's position), each new message's
 * conversation and seq, and each of its delivery rows' recipient. A unique violation (a
 * concurrent retry stored the same clientMsgId first) undoes the whole statement, seq
 * included.
 *
 * Runs as a named statement with one generic plan (database.ts: createHotPathDatabase):
 * every table is reached by key from the batch's rows. Checked with bench/investigations/explain.ts.
 */
/** What only entries and group messages need: the targets' and the groups' checks (see above). */
const CHECKS = `, t AS (
     SELECT * FROM unnest($13::uuid[], $14::text[], $15::text[], $16::timestamptz[], $17::timestamptz[], $18::jsonb[])
       AS t(id, seen_xmin, content, edited_at, deleted_at, patch)
   ), current AS MATERIALIZED (
     -- FOR UPDATE waits for a concurrent writer and then returns the row as it committed it.
     SELECT m.message_id, m.xmin::text AS xmin FROM messages m
     WHERE m.message_id IN (SELECT id FROM t) AND m.deleted_at IS NULL
     ORDER BY m.message_id FOR UPDATE
   ), seen AS (
     SELECT * FROM unnest($20::uuid[], $21::bigint[]) AS s(id, version)
   ), membership AS MATERIALIZED (
     SELECT c.conversation_id, c.members_version FROM conversations c
     WHERE c.conversation_id IN (SELECT id FROM seen)
     ORDER BY c.conversation_id FOR UPDATE
   ), unchanged AS MATERIALIZED (
     SELECT count(*) = (SELECT count(*) FROM t)
       AND NOT EXISTS (
         SELECT 1 FROM seen s LEFT JOIN membership n ON n.conversation_id = s.id
         WHERE n.members_version IS DISTINCT FROM s.version
       ) AS ok
     FROM current c JOIN t ON t.id = c.message_id AND t.seen_xmin = c.xmin
   )`;
const SENT = `, sent AS (
     -- The first message to carry an upload marks it sent, in its own commit (docs/media.md).
     UPDATE media md SET sent_at = i.created_at FROM inserted i
     WHERE md.media_id = i.media_id AND md.sent_at IS NULL
   )`;
const ACTED = `, acted AS (
     -- A NULL in t means "unchanged"; reactions are { user: emoji } and a null value removes one.
     -- (SELECT ok ...) is evaluated once, before any row: nothing is touched when it is false.
     UPDATE messages m SET
       content = CASE WHEN t.deleted_at IS NOT NULL THEN '' ELSE COALESCE(t.content, m.content) END,
       edited_at = COALESCE(t.edited_at, m.edited_at),
       deleted_at = t.deleted_at,
       reactions = CASE WHEN t.deleted_at IS NOT NULL THEN '{}'::jsonb ELSE jsonb_strip_nulls(m.reactions || t.patch) END,
       -- Deleted for everyone: it no longer carries its media (whose bytes the sweep then removes if nothing else does).
       media_id = CASE WHEN t.deleted_at IS NOT NULL THEN NULL ELSE m.media_id END,
       media = CASE WHEN t.deleted_at IS NOT NULL THEN NULL ELSE m.media END
     FROM t WHERE m.message_id = t.id AND (SELECT ok FROM unchanged)
   ), erased AS (
     -- The deleted messages' ids as a list of their own, so the partial ref_id index is
     -- probed per id (a join with t may scan every entry). Entries inserted above are not
     -- visible here: the caller stores those erased already.
     UPDATE messages e SET content = ''
     WHERE e.ref_id = ANY($19::uuid[]) AND e.ref_id IS NOT NULL AND e.content <> '' AND (SELECT ok FROM unchanged)
   )`;

/**
 * `plain`: a batch of text messages without media that writes to no group (nothing to
 * judge, no member list to check again), the usual batch: the statement without `t`,
 * `current`, `seen`, `membership`, `unchanged`, `sent`, `acted` and `erased`. Empty as they
 * are for such a batch, their scans and updates of every partition of messages still cost
 * their executor set-up in each execution: ~0.2 ms of the database's CPU per statement,
 * measured here against 0.45 ms for all the rest of a one-message batch (docs/benchmarks.md,
 * "Server and database CPU per message"). Its parameters are $1–$11 (writeValues), then
 * the push delay.
 */
const writeText = (plain: boolean, push: boolean): string => {
  const delay = plain ? "$12" : "$23";
  return `WITH v AS (
     SELECT *${plain ? ", NULL::uuid AS ref_id, NULL::jsonb AS media" : ""}
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[],
       $8::timestamptz[], $9::timestamptz[], $10::bool[], $11::text[]${plain ? "" : ", $12::uuid[], $22::jsonb[]"})
       WITH ORDINALITY AS v(id, sender, recipient, given_id, direct_key, client_msg_id, content, created_at, expires_at,
         accept, kind${plain ? "" : ", ref_id, media"}, ord)
   ), stored AS (
     SELECT v.ord, to_jsonb(m) AS original FROM v
     JOIN message_idempotency k ON k.from_user_id = v.sender AND k.client_msg_id = v.client_msg_id
     JOIN messages m ON m.message_id = k.message_id
   )${plain ? "" : CHECKS}, routed AS (
     SELECT v.*, coalesce(v.given_id, d.conversation_id) AS conversation_id
     FROM v LEFT JOIN conversations d ON d.direct_key = v.direct_key
     WHERE v.accept AND coalesce(v.given_id, d.conversation_id) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM stored s WHERE s.ord = v.ord)${plain ? "" : "\n       AND (SELECT ok FROM unchanged)"}
   ), counts AS (
     -- Only text moves a conversation up the list; every kind takes a seq.
     SELECT conversation_id, count(*)::int AS n, max(created_at) FILTER (WHERE kind = 'text') AS text_at
     FROM routed GROUP BY conversation_id
   ), locked AS (
     SELECT conversation_id FROM conversations
     WHERE conversation_id IN (SELECT conversation_id FROM counts)
     ORDER BY conversation_id FOR UPDATE
   ), bumped AS (
     UPDATE conversations c SET last_seq = c.last_seq + counts.n,
       last_message_at = COALESCE(counts.text_at, c.last_message_at)
     FROM counts, locked
     WHERE c.conversation_id = counts.conversation_id AND c.conversation_id = locked.conversation_id
     RETURNING c.conversation_id, c.last_seq - counts.n AS base
   ), numbered AS (
     SELECT r.*, b.base + row_number() OVER (PARTITION BY r.conversation_id ORDER BY r.ord) AS seq
     FROM routed r JOIN bumped b ON b.conversation_id = r.conversation_id
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
     SELECT i.message_id, cm.user_id, 'sent' FROM inserted i
     JOIN conversation_members cm ON cm.conversation_id = i.conversation_id AND cm.user_id <> i.from_user_id
     ORDER BY i.conversation_id, i.seq, cm.user_id
     RETURNING message_id, recipient_id
   )${plain ? "" : ACTED}${push ? PUSHES.replace("$delay", delay) : ""}
   SELECT s.ord, NULL::uuid AS message_id, NULL::uuid AS conversation_id, NULL::bigint AS seq, NULL::text AS recipient,
     s.original
   FROM stored s
   UNION ALL
   SELECT NULL, message_id, conversation_id, seq, NULL, NULL FROM inserted
   UNION ALL
   SELECT NULL, message_id, NULL, NULL, recipient_id, NULL FROM delivered`;
};

/**
 * The push outbox part of the write (only when pushes are on): a row per delivery row of a
 * text message whose recipient has a pushkey, due PUSH_DELAY_MS after createdAt
 * (edits, deletes and reactions are not pushed). Written by the same statement as the
 * message, it commits or rolls back with it: no stored message can miss its push, and no
 * push can name a message that was not stored.
 */
const PUSHES = `, pushes AS (
     INSERT INTO push_outbox (message_id, recipient_id, due_at, first_due_at)
     SELECT d.message_id, d.recipient_id, n.due_at, n.due_at FROM delivered d
     JOIN (SELECT id, created_at + $delay::int * interval '1 millisecond' AS due_at FROM numbered WHERE kind = 'text') n
       ON n.id = d.message_id
     WHERE EXISTS (SELECT 1 FROM pushkeys p WHERE p.user_id = d.recipient_id)
   )`;

export const WRITE = statement("append", writeText(false, false));
export const WRITE_PUSH = statement("append_push", writeText(false, true));
/** A plain batch's statements (writeText), with `plainValues`. */
export const WRITE_PLAIN = statement("append_plain", writeText(true, false));
export const WRITE_PLAIN_PUSH = statement("append_plain_push", writeText(true, true));

/** One of: a stored original (`ord` set), a new message (`seq` set), or one of its recipients. */
export type WriteRow = {
  ord: string | number | null;
  message_id: string;
  conversation_id: string | null;
  seq: string | number | null;
  recipient: string | null;
  original: MessageRow | null;
};

/** $1–$11: the batch's rows (every statement); the plain statements take only these. */
export function plainValues(rows: BatchRow[]): unknown[] {
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

export function writeValues(rows: BatchRow[], plans: TargetPlan[] = [], versions: Map<string, number> = new Map()): unknown[] {
  const plan = <T>(pick: (p: TargetPlan) => T) => plans.map(pick);
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return [
    ...plainValues(rows),
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
  ];
}
