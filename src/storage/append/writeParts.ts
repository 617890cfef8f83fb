/**
 * Parts of the write statement (writeStatement.ts) that only some batches or some of its
 * variants need, spliced into its text there.
 */

/**
 * First contact: the direct conversations the batch writes to that did not exist in the
 * statement's snapshot, created by the statement itself, so a first message commits in one
 * statement like any other. `found` (writeText) is the batch's accepted rows, each with the
 * conversation it found, if any.
 * - `fresh`: one row per missing direct key: its first message (request order) gives the
 *   conversation's creator and creation time; its id is its own (`new_id`, one per key
 *   from the caller), not the message's (nobody should learn one from the other).
 * - `created`: inserted in key order (two batches creating the same pairs take the unique
 *   index's locks in the same order) with ON CONFLICT DO NOTHING: a pair another node
 *   created after this snapshot is not returned, its messages are not routed, and the
 *   caller falls back to createDirect and a second write. A later CTE cannot see the rows
 *   inserted here (one snapshot for the whole statement), so the conversation's counter is
 *   set here, to its number of messages in the batch, which writeText numbers 1..n; nothing
 *   else can have written to it: no other transaction sees it before this one commits.
 * - its two members and their `users` directory entries (sorted: concurrent batches writing
 *   the same new user wait in one order).
 */
export const CREATED = `, fresh AS (
     SELECT DISTINCT ON (direct_key) new_id, direct_key, sender, created_at,
       count(*) OVER w AS n, max(created_at) FILTER (WHERE kind = 'text') OVER w AS text_at
     FROM found WHERE found_id IS NULL
     WINDOW w AS (PARTITION BY direct_key)
     ORDER BY direct_key, ord
   ), created AS (
     INSERT INTO conversations (conversation_id, kind, direct_key, created_at, created_by, last_seq, last_message_at)
     SELECT new_id, 'direct', direct_key, created_at, sender, n, text_at FROM fresh ORDER BY direct_key
     ON CONFLICT (direct_key) DO NOTHING
     RETURNING conversation_id, direct_key, created_at
   ), members AS (
     -- Both users from the key, the sorted pair (messaging/routing.ts: directKey): no join
     -- back to \`fresh\` (on the hot path's connections only nested loops join).
     INSERT INTO conversation_members (conversation_id, user_id, joined_at)
     SELECT c.conversation_id, u.user_id, c.created_at FROM created c, unnest(string_to_array(c.direct_key, ' ')) AS u(user_id)
   ), directory AS (
     INSERT INTO users (user_id)
     SELECT DISTINCT u.user_id FROM created c, unnest(string_to_array(c.direct_key, ' ')) AS u(user_id) ORDER BY 1
     ON CONFLICT (user_id) DO NOTHING
   )`;

/** What only entries and group messages need: the targets' and the groups' checks (writeStatement.ts). */
export const CHECKS = `, t AS (
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
export const SENT = `, sent AS (
     -- The first message to carry an upload marks it sent, in its own commit (docs/media.md).
     UPDATE media md SET sent_at = i.created_at FROM inserted i
     WHERE md.media_id = i.media_id AND md.sent_at IS NULL
   )`;
export const ACTED = `, acted AS (
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
 * The push outbox part of the write (only when pushes are on): a row per delivery row of a
 * text message whose recipient has a pushkey, due PUSH_DELAY_MS after createdAt
 * (edits, deletes and reactions are not pushed). Written by the same statement as the
 * message, it commits or rolls back with it: no stored message can miss its push, and no
 * push can name a message that was not stored.
 */
export const PUSHES = `, pushes AS (
     INSERT INTO push_outbox (message_id, recipient_id, due_at, first_due_at)
     SELECT d.message_id, d.recipient_id, n.due_at, n.due_at FROM delivered d
     JOIN (SELECT id, created_at + $delay::int * interval '1 millisecond' AS due_at FROM numbered WHERE kind = 'text') n
       ON n.id = d.message_id
     WHERE EXISTS (SELECT 1 FROM pushkeys p WHERE p.user_id = d.recipient_id)
   )`;

